"""Shared pytest configuration: QGIS runs offscreen, the reference service comes as fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["tests.featureservice.fixtures", "tests.chromium"]


def pytest_configure(config) -> None:
    # The tests' own GDAL calls check return codes: GDAL's default mode, chosen explicitly so
    # that GDAL 3.7+ does not warn about GDAL 4. Tests needing the other mode use
    # plugin.core.gdal_mode.gdal_exceptions.
    from osgeo import gdal

    gdal.DontUseExceptions()
