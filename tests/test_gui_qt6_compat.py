"""The plugin's sources stay loadable on QGIS 3.22 (Qt5) through QGIS 3.40 and QGIS 4 (Qt6).

Only QGIS 3.22 runs here, so these checks read the sources: Qt6 dropped ``exec_()`` and the
unscoped enum names (``Qt.AlignLeft``, ``QMessageBox.Yes``), moved ``QAction`` to ``QtGui``,
and QGIS 4 drops the class-scoped enums that QGIS 3.2x-3.3x moved to ``Qgis``. The ``.ui`` files
must suit both ``uic`` implementations (PyQt5 reads only ``Class::Member`` enum names; PyQt6's
``uic`` needs a ``sizeHint`` on spacers).
"""

from __future__ import annotations

import ast
import functools
import re
import tokenize
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# tests/tools/screenshot.py runs inside the QGIS desktop too.
SOURCES = [
    ROOT / "__init__.py",
    *sorted((ROOT / "plugin").rglob("*.py")),
    *sorted((ROOT / "tests" / "tools").glob("*.py")),
]
UI_FILES = sorted((ROOT / "ui").glob("*.ui"))


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


# Enum members that Qt6 (PyQt6) and QGIS 4 only know through their enum's scope. Each pattern
# matches the unscoped spelling; the scoped one (Qt.AlignmentFlag.AlignLeft) never matches.
UNSCOPED = {
    r"\bQt\.(Align(Left|Right|Center|HCenter|VCenter|Top|Bottom|Justify))\b": "Qt.AlignmentFlag",
    r"\bQt\.(Checked|Unchecked|PartiallyChecked)\b": "Qt.CheckState",
    r"\bQt\.(UserRole|DisplayRole|EditRole|ToolTipRole|DecorationRole|ForegroundRole|BackgroundRole|FontRole)\b": "Qt.ItemDataRole",
    r"\bQt\.(ItemIs\w+|NoItemFlags)\b": "Qt.ItemFlag",
    r"\bQt\.(Horizontal|Vertical)\b": "Qt.Orientation",
    r"\bQt\.(RichText|PlainText|AutoText|MarkdownText)\b": "Qt.TextFormat",
    r"\bQt\.(TextSelectableByMouse|TextBrowserInteraction|LinksAccessibleByMouse)\b": "Qt.TextInteractionFlag",
    r"\bQt\.(Left|Right|Top|Bottom)DockWidgetArea\b": "Qt.DockWidgetArea",
    r"\bQt\.(WaitCursor|ArrowCursor|BusyCursor|PointingHandCursor)\b": "Qt.CursorShape",
    r"\bQt\.(AscendingOrder|DescendingOrder)\b": "Qt.SortOrder",
    r"\bQt\.(WindowModal|ApplicationModal|NonModal)\b": "Qt.WindowModality",
    r"\bQt\.(ElideRight|ElideLeft|ElideMiddle)\b": "Qt.TextElideMode",
    r"\bQt\.(QueuedConnection|DirectConnection|BlockingQueuedConnection)\b": "Qt.ConnectionType",
    r"\bQt\.(MatchExactly|MatchContains|MatchFixedString)\b": "Qt.MatchFlag",
    r"\bQt\.(CustomContextMenu|NoContextMenu)\b": "Qt.ContextMenuPolicy",
    r"\bQt\.(ISODate|ISODateWithMs)\b": "Qt.DateFormat",
    r"\bQt\.Key_\w+\b": "Qt.Key",
    r"\bQt\.MidButton\b": "Qt.MouseButton.MiddleButton",
    r"\bQMessageBox\.(Yes|No|Ok|Cancel|Save|Discard|Close|Abort|Retry|Ignore|YesToAll|NoToAll)\b": "QMessageBox.StandardButton",
    r"\bQMessageBox\.(Warning|Critical|Information|Question|NoIcon)\b": "QMessageBox.Icon",
    r"\bQMessageBox\.(YesRole|NoRole|AcceptRole|RejectRole|DestructiveRole|ActionRole)\b": "QMessageBox.ButtonRole",
    r"\bQDialogButtonBox\.(Ok|Cancel|Close|Save|Yes|No|Apply|Reset|Help|Discard|Abort|Retry)\b": "QDialogButtonBox.StandardButton",
    r"\bQDialog\.(Accepted|Rejected)\b": "QDialog.DialogCode",
    r"\bQAbstractItemView\.(SelectRows|SelectItems|SelectColumns)\b": "QAbstractItemView.SelectionBehavior",
    r"\bQAbstractItemView\.(SingleSelection|ExtendedSelection|MultiSelection|NoSelection)\b": "QAbstractItemView.SelectionMode",
    r"\bQAbstractItemView\.(NoEditTriggers|DoubleClicked|AllEditTriggers)\b": "QAbstractItemView.EditTrigger",
    r"\bQHeaderView\.(Stretch|ResizeToContents|Interactive|Fixed)\b": "QHeaderView.ResizeMode",
    r"\bQSizePolicy\.(Expanding|Preferred|Fixed|Minimum|Maximum|MinimumExpanding|Ignored)\b": "QSizePolicy.Policy",
    r"\bQFrame\.(StyledPanel|NoFrame|HLine|VLine|Box|Panel)\b": "QFrame.Shape",
    r"\bQLineEdit\.(Password|Normal|NoEcho)\b": "QLineEdit.EchoMode",
    r"\bQFileDialog\.(ShowDirsOnly|DontUseNativeDialog|DontConfirmOverwrite)\b": "QFileDialog.Option",
    r"\bQgis\.(Info|Warning|Critical|Success|NoLevel)\b": "Qgis.MessageLevel",
    r"\bQgsTask\.(CanCancel|CancelWithoutPrompt|Hidden|Silent|AllFlags)\b": "QgsTask.Flag",
    r"\bQgsTask\.(Queued|OnHold|Running|Complete|Terminated)\b": "QgsTask.TaskStatus",
    r"\bQgsFileWidget\.(GetFile|GetDirectory|GetMultipleFiles|SaveFile)\b": "QgsFileWidget.StorageMode",
    r"\bQgsMapLayerProxyModel\.(HasGeometry|VectorLayer|PointLayer|LineLayer|PolygonLayer|NoGeometry)\b": "Qgis.LayerFilter",
    r"\bQgsWkbTypes\.(Point|Line|Polygon|Unknown|Null)Geometry\b": "Qgis.GeometryType",
    r"\bQgsProcessing\.Type\w+\b": "Qgis.ProcessingSourceType",
    r"\bQgsProcessingParameterNumber\.(Integer|Double)\b": "Qgis.ProcessingNumberParameterType",
    r"\bQgsProcessingParameterFile\.(File|Folder)\b": "Qgis.ProcessingFileParameterBehavior",
    r"\bQgsProcessingParameterDefinition\.Flag\w+\b": "Qgis.ProcessingParameterFlag",
    r"\bQgsProcessingAlgorithm\.Flag\w+\b": "Qgis.ProcessingAlgorithmFlag",
    r"\bQgsRelation\.(Association|Composition)\b": "Qgis.RelationshipStrength",
    r"\bQVariant\.(Int|String|Double|Bool|LongLong|Date|DateTime|Time|ByteArray|Map|List)\b": "QMetaType.Type",
}

# Qt5-only API that Qt6 removed.
REMOVED = {
    r"\bexec_\(": "exec()",
    r"\bQRegExp\b": "QRegularExpression",
    r"\bQDesktopWidget\b": "QScreen",
    r"\.desktop\(\)": "QScreen",
    r"\bQtWebKit\w*\b": "(no web view)",
    r"\.setMargin\(": "setContentsMargins()",
    r"\bfontMetrics\(\)\.width\(": "horizontalAdvance()",
}

# Class-scoped enums that QGIS moved to ``Qgis`` (and QGIS 4 removes from the class): allowed
# only as the fallback of a feature test for the new name in the same module.
MOVED = {
    "QgsMapLayerProxyModel.Filter": "LayerFilter",
    "QgsCoordinateReferenceSystem.WktVariant": "CrsWktVariant",
    "QgsRelation.RelationStrength": "RelationshipStrength",
    "QgsProcessingParameterFile.Behavior": "ProcessingFileParameterBehavior",
    "QgsProcessingParameterNumber.Type": "ProcessingNumberParameterType",
    "QgsProcessing.SourceType": "ProcessingSourceType",
    "QgsWkbTypes.GeometryType": "GeometryType",
    "QgsProcessingParameterDefinition.Flag": "ProcessingParameterFlag",
    "QgsProcessingAlgorithm.Flag": "ProcessingAlgorithmFlag",
    "QgsProcessingParameterField.DataType": "ProcessingFieldParameterDataType",
    "QgsFeatureRequest.Flag": "FeatureRequestFlag",
    "QgsVectorDataProvider.Capability": "VectorProviderCapability",
}

# Moved from QtWidgets to QtGui in Qt6.
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QFileSystemModel"}


@functools.cache
def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Source lines without comments and strings (docstrings may name old APIs freely)."""
    lines: dict[int, str] = {}
    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.ENCODING}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_MIDDLE",) if hasattr(tokenize, n)}
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type in skip or token.start[0] != token.end[0]:
                continue
            number, column = token.start
            line = lines.get(number, "")
            lines[number] = line.ljust(column) + token.string
    return sorted(lines.items())


def _violations(path: Path, rules: dict[str, str]) -> list[str]:
    found = []
    for number, code in _code_lines(path):
        for pattern, use in rules.items():
            for match in re.finditer(pattern, code):
                found.append(f"{_ids(path)}:{number}: {match.group(0)} -> use {use}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=_ids)
def test_no_unscoped_enums(path: Path) -> None:
    assert _violations(path, UNSCOPED) == []


@pytest.mark.parametrize("path", SOURCES, ids=_ids)
def test_no_qt5_only_api(path: Path) -> None:
    assert _violations(path, REMOVED) == []


@pytest.mark.parametrize("path", SOURCES, ids=_ids)
def test_enums_qgis_moved_are_feature_detected(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    missing = [
        f"{old} without hasattr(Qgis, {new!r})"
        for old, new in MOVED.items()
        if re.search(re.escape(old) + r"\b", source)
        and not re.search(rf"hasattr\(\s*Qgis\s*,\s*['\"]{new}['\"]\s*\)", source)
    ]
    assert missing == [], _ids(path)


def _qtgui_fallbacks(tree: ast.AST) -> set[int]:
    """Line numbers of QtWidgets imports that are the ImportError fallback of a QtGui import."""
    allowed = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        tries_qtgui = any(
            isinstance(n, ast.ImportFrom) and (n.module or "").endswith("QtGui") for n in node.body
        )
        if tries_qtgui:
            for handler in node.handlers:
                allowed.update(n.lineno for n in handler.body if isinstance(n, ast.ImportFrom))
    return allowed


@pytest.mark.parametrize("path", SOURCES, ids=_ids)
def test_qaction_is_imported_where_qt6_has_it(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = _qtgui_fallbacks(tree)
    bad = [
        f"{_ids(path)}:{node.lineno}: {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").endswith("QtWidgets")
        and node.lineno not in allowed
        for alias in node.names
        if alias.name in MOVED_TO_QTGUI
    ]
    assert bad == [], "import these from qgis.PyQt.QtGui first, QtWidgets only as the fallback"


@pytest.mark.parametrize("path", UI_FILES, ids=_ids)
def test_ui_enum_values_suit_both_uic_versions(path: Path) -> None:
    root = ET.parse(path).getroot()
    bad = []
    for element in root.iter():
        if element.tag not in ("enum", "set") or not element.text:
            continue
        for value in element.text.split("|"):
            parts = value.strip().split("::")
            # PyQt5's uic splits on "::" once: "Qt::Orientation::Horizontal" would not load.
            if len(parts) > 2:
                bad.append(value.strip())
    assert bad == []


@pytest.mark.parametrize("path", UI_FILES, ids=_ids)
def test_ui_spacers_have_a_size_hint(path: Path) -> None:
    # PyQt6's uic writes QSpacerItem(policy, policy) for a spacer without one: a TypeError.
    root = ET.parse(path).getroot()
    bare = [
        spacer.get("name")
        for spacer in root.iter("spacer")
        if not any(p.get("name") == "sizeHint" for p in spacer.findall("property"))
    ]
    assert bare == []


@pytest.mark.parametrize("path", UI_FILES, ids=_ids)
def test_ui_files_use_no_compiled_resources_or_qt4_properties(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.find("resources/include") is None, "icons are SVG files loaded by path"
    qt4 = [p.get("name") for p in root.iter("property") if p.get("name") in ("margin",)]
    assert qt4 == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from qgis.PyQt.QtWidgets import QAction\n"
        "x = Qt.AlignLeft | Qt.AlignmentFlag.AlignLeft\n"
        "dialog.exec_()\n"
        "# Qt.AlignRight in a comment is fine\n"
        "QgsRelation.RelationStrength.Composition\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert _violations(sample, UNSCOPED) == [
            "sample.py:2: Qt.AlignLeft -> use Qt.AlignmentFlag"
        ]
        assert _violations(sample, REMOVED) == ["sample.py:3: exec_( -> use exec()"]
        with pytest.raises(AssertionError):
            test_qaction_is_imported_where_qt6_has_it(sample)
        with pytest.raises(AssertionError):
            test_enums_qgis_moved_are_feature_detected(sample)
    finally:
        ROOT = saved
