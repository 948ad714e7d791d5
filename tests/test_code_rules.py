"""Rules every module of the plugin must follow to run in every supported QGIS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIRS = ("plugin",)


def _python_files(*dirs: str) -> list[Path]:
    files = [ROOT / "__init__.py"]
    for d in dirs:
        files.extend(sorted((ROOT / d).rglob("*.py")))
    return files


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


ALL_FILES = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and "dist" not in p.parts]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_pyqt_directly(path: Path) -> None:
    direct = [m for m in _imported_modules(path) if m.split(".")[0] in ("PyQt5", "PyQt6", "sip")]
    assert not direct, f"{path.name} imports {direct}; import from qgis.PyQt instead"


@pytest.mark.parametrize(
    "path", _python_files("plugin/core"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_core_never_imports_qgis(path: Path) -> None:
    if path == ROOT / "__init__.py":
        pytest.skip("the plugin entry point is not part of the core")
    qgis = [m for m in _imported_modules(path) if m.split(".")[0] == "qgis"]
    assert not qgis, f"{path.name} is core code but imports {qgis}"


ALLOWED_RUNTIME_TOP_LEVEL = {"qgis", "osgeo", "requests", "urllib3", "processing"}


@pytest.mark.parametrize(
    "path", _python_files(*RUNTIME_DIRS), ids=lambda p: str(p.relative_to(ROOT))
)
def test_runtime_code_uses_only_what_qgis_ships(path: Path) -> None:
    import sys

    stdlib = set(sys.stdlib_module_names)
    foreign = [
        m
        for m in _imported_modules(path)
        if m.split(".")[0] not in stdlib | ALLOWED_RUNTIME_TOP_LEVEL | {"plugin"}
    ]
    assert not foreign, f"{path.name} imports {foreign}, which users' QGIS may not have"


@pytest.mark.parametrize(
    "path", _python_files(*RUNTIME_DIRS), ids=lambda p: str(p.relative_to(ROOT))
)
def test_runtime_code_postpones_annotations_for_python_39(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    if not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.walk(tree)):
        pytest.skip("no definitions")
    assert "from __future__ import annotations" in source, (
        f"{path.name} needs 'from __future__ import annotations' (QGIS on Windows runs Python 3.9)"
    )
    assert not any(isinstance(n, ast.Match) for n in ast.walk(tree)), "no match statements"
