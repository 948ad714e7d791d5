"""The plugin chooses GDAL's exception mode for its own GDAL calls and leaves the interpreter's
mode (shared with QGIS and other plugins) as it found it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import gdal, ogr, osr

from plugin.core.gdal_mode import gdal_exceptions
from tests.featureservice.seed import DEMO_SERVICE

ROOT = Path(__file__).resolve().parent.parent


def modes() -> tuple[bool, bool, bool]:
    return tuple(bool(module.GetUseExceptions()) for module in (gdal, ogr, osr))


def raised(missing: str) -> tuple[bool, bool, bool]:
    """Whether a failing call of GDAL, of OGR and of OSR raised (else it returned its error)."""
    calls = (
        lambda: gdal.OpenEx(missing) is None,
        lambda: ogr.CreateGeometryFromWkt("nonsense") is None,
        lambda: osr.SpatialReference().ImportFromEPSG(999999) != 0,
    )
    answers = []
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        for call in calls:
            try:
                assert call()
                answers.append(False)
            except RuntimeError:
                answers.append(True)
    finally:
        gdal.PopErrorHandler()
    return tuple(answers)


@pytest.mark.parametrize("outer", [False, True], ids=["outside off", "outside on"])
def test_the_mode_holds_inside_the_block_and_is_restored_after_it(tmp_path, outer):
    missing = str(tmp_path / "missing.gpkg")
    with gdal_exceptions(outer):
        assert modes() == raised(missing) == (outer,) * 3
        for inner in (True, False):
            with gdal_exceptions(inner):
                assert modes() == raised(missing) == (inner,) * 3
            assert modes() == raised(missing) == (outer,) * 3
        with pytest.raises(KeyError), gdal_exceptions(not outer):
            raise KeyError("an error inside the block")
        assert modes() == (outer,) * 3


TAKE_OFFLINE = r"""
import sys
sys.path.insert(0, sys.argv[1])
from osgeo import gdal, ogr, osr
if sys.argv[4] == "on":
    gdal.UseExceptions()  # as QGIS's DB Manager does when it loads
    ogr.UseExceptions()
    osr.UseExceptions()
from plugin.core.rest import ArcGISClient
from plugin.core.take_offline import OfflineMapTask

task = OfflineMapTask(service_urls=[sys.argv[2]], client=ArcGISClient(retries=0))
parameters = task.create_default_generate_offline_map_parameters(None)
offline_map = task.generate_offline_map(parameters, sys.argv[3]).run().offline_map
print(len(offline_map.geodatabases), "geodatabase(s);", "exceptions",
      [bool(m.GetUseExceptions()) for m in (gdal, ogr, osr)])
"""


@pytest.mark.parametrize("mode", ["unset", "on"], ids=["nobody chose a mode", "exceptions on"])
def test_taking_offline_in_a_fresh_interpreter_warns_nothing_and_keeps_the_mode(
    reference_server, tmp_path, mode
):
    # A fresh interpreter: in this one, the tests already chose a mode (conftest.py).
    child = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            TAKE_OFFLINE,
            str(ROOT),
            reference_server.service_url(DEMO_SERVICE),
            str(tmp_path / "map"),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == 0, child.stderr
    assert "Warning" not in child.stderr, child.stderr
    expected = [True, True, True] if mode == "on" else [False, False, False]
    assert child.stdout.strip() == f"1 geodatabase(s); exceptions {expected}"
