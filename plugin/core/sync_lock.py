"""One sync-type operation per geodatabase, across threads and processes.

The lock is an operating-system lock on a small file next to the GeoPackage
(``<name>.gpkg.synclock``): ``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows.
The system releases it when the owning process dies, so a crashed QGIS never leaves a stale
lock behind. Threads of one process are excluded by a registry of held paths, since some
platforms grant a process's own file locks to all of its threads.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import SyncInProgressError

_INFO_OFFSET = 64  # owner info is written after the locked byte (readable on Windows too)
_held: set[str] = set()
_held_guard = threading.Lock()


def lock_path_for(gpkg_path: str) -> str:
    return gpkg_path + ".synclock"


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _try_os_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _os_unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _owner_text(lock_path: str) -> str:
    try:
        with open(lock_path, "rb") as fh:
            fh.seek(_INFO_OFFSET)
            text = fh.read(200).decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        return ""
    return text


@contextmanager
def sync_lock(gpkg_path: str, *, timeout: float = 0.0) -> Iterator[None]:
    """Hold the sync lock of ``gpkg_path`` for the ``with`` block.

    Raises :class:`SyncInProgressError` when another thread or process holds it (after
    waiting up to ``timeout`` seconds).
    """
    key = _key(gpkg_path)
    name = os.path.basename(gpkg_path)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        with _held_guard:
            if key not in _held:
                _held.add(key)
                break
        if time.monotonic() >= deadline:
            raise SyncInProgressError(
                f"{name} is already synchronizing in this QGIS session. "
                "Wait for that operation to finish, then try again."
            )
        time.sleep(0.05)
    fd = None
    try:
        lock_path = lock_path_for(gpkg_path)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        while not _try_os_lock(fd):
            if time.monotonic() >= deadline:
                owner = _owner_text(lock_path)
                where = f" ({owner})" if owner else ""
                raise SyncInProgressError(
                    f"{name} is already synchronizing in another program{where}. "
                    "Wait for that operation to finish, then try again."
                )
            time.sleep(0.05)
        try:
            info = f"process {os.getpid()} on {socket.gethostname()}".encode()
            os.lseek(fd, _INFO_OFFSET, os.SEEK_SET)
            os.write(fd, info.ljust(200, b" "))
        except OSError:
            pass  # the owner note is only a courtesy for the error message
        try:
            yield
        finally:
            _os_unlock(fd)
    finally:
        if fd is not None:
            os.close(fd)
        with _held_guard:
            _held.discard(key)
