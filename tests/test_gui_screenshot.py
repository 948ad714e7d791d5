"""The real QGIS desktop under Xvfb shows the panel and the loaded layers (what `make
screenshot` saves for reviewers)."""

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
def test_screenshot_of_qgis_with_the_panel_and_layers(tmp_path):
    png = tmp_path / "qgis.png"
    done = subprocess.run(
        [sys.executable, "-m", "tests.tools.screenshot", "--out", str(png), "--timeout", "200"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    image = QImage(str(png))
    assert not image.isNull()
    assert (image.width(), image.height()) == (1600, 1000)
    # Not a blank window: the map, the layer tree and the panel give many colours.
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    assert len(colours) > 50
