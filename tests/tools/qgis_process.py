"""Find and run the right ``qgis_process`` for the installed QGIS, with this plugin visible.

Debian 12's ``/usr/bin/qgis_process`` wrapper passes ``--noversioncheck``, which QGIS 3.22
rejects; there the real binary ``qgis_process.bin`` must be called. We detect instead of
assuming: a candidate is used only if ``--version`` succeeds with it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FOLDER_NAME = "offline_map_sync"


@functools.cache  # probing starts QGIS: do it once per Python process
def find_qgis_process() -> str:
    """Path of a working ``qgis_process`` executable, or raise FileNotFoundError."""
    candidates = []
    for name in ("qgis_process", "qgis_process-qgis", "qgis_process.bin"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
            binary = found + ".bin"
            if os.path.exists(binary):
                candidates.append(binary)
    candidates.append("/usr/bin/qgis_process.bin")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    for candidate in dict.fromkeys(candidates):
        if not os.path.exists(candidate):
            continue
        try:
            done = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=120, env=env
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and "QGIS" in done.stdout:
            return candidate
    raise FileNotFoundError("no working qgis_process found (is the qgis package installed?)")


class QgisProcess:
    """Runs ``qgis_process`` in a throw-away profile with this working copy as a plugin."""

    def __init__(self, work_dir: Path | None = None, plugin_dir: Path = REPO_ROOT) -> None:
        self.executable = find_qgis_process()
        self._tmp = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="oms-qgis-process-")
            work_dir = Path(self._tmp.name)
        self.work_dir = Path(work_dir)
        plugins = self.work_dir / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / PLUGIN_FOLDER_NAME
        if not link.exists():
            link.symlink_to(plugin_dir, target_is_directory=True)
        self.env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            QGIS_PLUGINPATH=str(plugins),
            QGIS_CUSTOM_CONFIG_PATH=str(self.work_dir / "config"),
            XDG_RUNTIME_DIR=str(self.work_dir / "runtime"),
        )
        (self.work_dir / "runtime").mkdir(mode=0o700, exist_ok=True)
        self.run("plugins", "enable", PLUGIN_FOLDER_NAME, check=True)

    def run(
        self, *args: str, check: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"qgis_process {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done

    def run_json(self, *args: str, timeout: float = 600) -> dict:
        """Run with ``--json`` and return the parsed output (raises with the output on failure)."""
        done = self.run("--json", *args, timeout=timeout)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as error:
            raise RuntimeError(
                f"qgis_process {' '.join(args)} gave no JSON (exit {done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            ) from error

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
