"""GDAL's Python exception mode, chosen for a block of code and put back afterwards.

Other code in the interpreter shares the mode (inside QGIS, DB Manager turns exceptions on when
it loads), so the plugin never leaves it changed. Choosing it explicitly also keeps GDAL 3.7+
from warning that GDAL 4 will turn exceptions on by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager


@contextmanager
def gdal_exceptions(enabled: bool) -> Iterator[None]:
    """Run the block with GDAL, OGR and OSR raising ``RuntimeError`` on errors (``enabled``) or
    returning error codes (not ``enabled``); afterwards each module is in its previous mode.

    Also usable as a function decorator. From GDAL 3.7 on the mode is set for the calling
    thread only (``ExceptionMgr``), so a background task does not change it under QGIS's main
    thread; before 3.7 it is each module's global mode, set and restored."""
    from osgeo import gdal, ogr, osr

    modules = (gdal, ogr, osr)
    if hasattr(gdal, "ExceptionMgr"):
        with ExitStack() as stack:
            for module in modules:
                stack.enter_context(module.ExceptionMgr(useExceptions=enabled))
            yield
        return
    # Before 3.7, each module's UseExceptions() pushes an error handler onto one stack, and
    # DontUseExceptions() can only pop the topmost: change modules in stack order, undo in reverse.
    if enabled:
        changed = [module for module in modules if not module.GetUseExceptions()]
    else:
        stack = gdal.GetConfigOption("__chain_python_error_handlers") or ""
        changed = sorted(
            (module for module in modules if module.GetUseExceptions()),
            key=lambda module: _position(stack.split(), module.__name__.rsplit(".", 1)[-1]),
        )
    done = []
    try:
        for module in changed:
            _set_global_mode(module, enabled)
            done.append(module)
        yield
    finally:
        for module in reversed(done):
            _set_global_mode(module, not enabled)


def _position(names: list[str], name: str) -> int:
    return names.index(name) if name in names else len(names)


def _set_global_mode(module, enabled: bool) -> None:
    if enabled:
        module.UseExceptions()
    else:
        module.DontUseExceptions()
