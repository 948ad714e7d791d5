"""The QGIS-free core of Offline Map Sync.

Nothing in this package imports ``qgis``: it runs in QGIS, in ``qgis_process``, in a plain
Python interpreter and in the tests alike. It may use the standard library, ``requests`` and
GDAL's ``osgeo`` (both ship with every QGIS).
"""
