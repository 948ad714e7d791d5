"""The real QGIS desktop under Xvfb, driven by clicks, shows the panel, the dialogs and the
loaded layers (the series `make screenshot` saves for reviewers)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from qgis.PyQt.QtGui import QImage

from tests.tools.qgis_process import REPO_ROOT


@pytest.mark.skipif(
    not (shutil.which("xvfb-run") and shutil.which("qgis")),
    reason="needs the QGIS desktop and xvfb-run (make setup installs both)",
)
def test_screenshots_of_the_job_done_by_clicks_in_qgis(tmp_path):
    png = tmp_path / "qgis.png"
    done = subprocess.run(
        [sys.executable, "-m", "tests.tools.screenshot", "--out", str(png), "--timeout", "240"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=320,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    log = png.with_suffix(".log")
    assert not log.exists(), log.read_text(encoding="utf-8")[-2000:]
    for step in (
        "1_take_offline",
        "1b_basemap",
        "2_feature_form",
        "3_sync_conflict",
        "4_conflict_log",
        "5_sync_failed",
        "6_signed_in",
        "7_signed_out",
    ):
        side = QImage(str(png.with_name(f"{png.stem}_{step}.png")))
        assert not side.isNull() and side.width() > 300, step
    image = QImage(str(png))
    assert not image.isNull()
    assert (image.width(), image.height()) == (1600, 1000)
    # Not a blank window: the map, the layer tree and the panel give many colours.
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    assert len(colours) > 50
