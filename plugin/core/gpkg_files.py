"""GeoPackage files on disk: moving a finished one into place and removing one with its
sidecar files (``-wal``, ``-shm``, ``-journal``, the sync lock file)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from .errors import GeodatabaseError

log = logging.getLogger(__name__)

#: SQLite's own side files of a database file.
SQLITE_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
#: Every side file of one of our GeoPackages: SQLite's, and the sync lock file.
SIDECAR_SUFFIXES = (*SQLITE_SIDE_SUFFIXES, ".synclock")


def remove_geopackage(path: Path) -> None:
    """Delete a GeoPackage and its sidecar files. Never raises: cleanup must never hide the
    error that caused it (a file that cannot be removed is logged)."""
    for suffix in ("", *SIDECAR_SUFFIXES):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("Could not remove %s%s: %s", path, suffix, error)


def move_geopackage(new: Path, target: Path) -> None:
    """Move the closed, finished GeoPackage ``new`` to ``target`` (replacing it).

    The one rule for moving: first fold ``new``'s write-ahead log into the file, so that one
    self-contained file moves; a stale ``-wal`` of the old ``target`` is removed first (SQLite
    would replay it into the new file). Raises GeodatabaseError when ``new`` is still in use.
    """
    _checkpoint(new)
    for suffix in ("-wal", "-shm"):
        stale = Path(f"{target}{suffix}")
        if stale.exists():
            stale.unlink()
    os.replace(new, target)
    remove_geopackage(new)  # its emptied sidecars and sync lock file


def _checkpoint(path: Path) -> None:
    if not Path(f"{path}-wal").exists():
        return
    conn = sqlite3.connect(path, timeout=5)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as error:
        raise GeodatabaseError(
            f"The geodatabase {path.name} cannot be finished: {error}."
        ) from None
    finally:
        conn.close()
    if busy:
        raise GeodatabaseError(
            f"The geodatabase {path.name} is still in use by another program; close it and try "
            "again."
        )
