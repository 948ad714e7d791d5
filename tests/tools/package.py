"""Build the plugin zip that QGIS's "Install from ZIP" accepts: plugin files only.

Usage: python tests/tools/package.py DIST_DIR FILE_OR_DIR...
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "offline_map_sync"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def main(dist: str, entries: list[str]) -> Path:
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    version = meta["general"]["version"]
    out_dir = Path(dist)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{FOLDER}-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            path = ROOT / entry
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT)
                if SKIP_PARTS & set(relative.parts) or file.suffix in (".pyc", ".pyo"):
                    continue
                archive.write(file, f"{FOLDER}/{relative.as_posix()}")
    return target


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2:]))
