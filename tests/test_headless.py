"""The headless path users' scripts and CI pipelines take: qgis_process and the plugin zip."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.tools.qgis_process import REPO_ROOT, QgisProcess


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory):
    runner = QgisProcess(tmp_path_factory.mktemp("qgis_process"))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    """The zip `make package` builds, built once for the tests that read or install it."""
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        ["make", "-s", "package", f"DIST={dist}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return dist


def test_qgis_process_lists_the_provider(qgis_process):
    listing = qgis_process.run_json("list")
    provider = listing["providers"].get("offlinemapsync")
    assert provider is not None, sorted(listing["providers"])
    assert provider["name"] == "Offline Map Sync"
    assert provider["is_active"]


def test_make_package_builds_an_installable_zip(plugin_zip):
    zips = list(plugin_zip.glob("offline_map_sync-*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"offline_map_sync"}
    for required in (
        "metadata.txt",
        "__init__.py",
        "LICENSE",
        "plugin/main.py",
        "ui/dock_panel.ui",
    ):
        assert f"offline_map_sync/{required}" in names
    assert "offline_map_sync/resources/icons/offline_map_sync.svg" in names
    forbidden = [n for n in names if n.split("/")[1] in ("tests", ".ci", "Makefile", ".venv")]
    assert forbidden == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_zip_alone_is_a_working_plugin(plugin_zip, tmp_path):
    # What "Install from ZIP" gives a user: the zip's folder, without this repository beside it.
    (archive_path,) = plugin_zip.glob("offline_map_sync-*.zip")
    with zipfile.ZipFile(archive_path) as archive:
        archive.extractall(tmp_path / "installed")
    runner = QgisProcess(
        tmp_path / "profile", plugin_dir=tmp_path / "installed" / "offline_map_sync"
    )
    try:
        listing = runner.run_json("list")
        # Running an algorithm imports the core from the zip's copy, and bad input is explained.
        missing = tmp_path / "no such map"
        done = runner.run("run", "offlinemapsync:checkforupdates", "--", f"OFFLINE_MAP={missing}")
    finally:
        runner.close()
    assert done.returncode != 0
    assert f"The offline map folder {missing} does not exist." in done.stdout + done.stderr
    algorithms = listing["providers"]["offlinemapsync"]["algorithms"]
    for name in ("takemapoffline", "synchronizeofflinemap", "checkforupdates", "removeofflinemap"):
        assert f"offlinemapsync:{name}" in algorithms, sorted(algorithms)
