"""Offline Map Sync: the QGIS plugin package (QGIS integration on top of :mod:`plugin.core`)."""
