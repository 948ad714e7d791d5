"""Shared pytest configuration: QGIS runs offscreen, the reference service comes as fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = ["tests.featureservice.fixtures", "tests.chromium"]


def pytest_configure(config) -> None:
    # The tests' own GDAL calls check return codes: GDAL's default mode, chosen explicitly so
    # that GDAL 3.7+ does not warn about GDAL 4. Tests needing the other mode use
    # plugin.core.gdal_mode.gdal_exceptions.
    from osgeo import gdal

    gdal.DontUseExceptions()


@pytest.fixture(autouse=True)
def fresh_qgis_settings(qgis_app) -> None:
    """Every test starts from the QGIS settings of a new installation.

    pytest-qgis keeps the session's QGIS profile in ``.qgis-settings/`` under the project root,
    and it outlives the session: without this, a choice one test made (a dialog remembering
    "Feature services", a collapsed group box, a signed-in account) would greet the next test,
    in this session or the next one. Clearing everything rather than the plugin's own keys
    also covers keys added later and the QGIS widgets' state the plugin's dialogs leave.
    The profile's auth database is not a setting: tests remove the configurations they make.
    """
    from qgis.core import QgsSettings

    settings = QgsSettings()
    settings.clear()
    settings.sync()
