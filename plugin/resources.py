"""Where the plugin's files live, and its translation helper."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent
UI_DIR = PLUGIN_DIR / "ui"
ICONS_DIR = PLUGIN_DIR / "resources" / "icons"
PLUGIN_NAME = "Offline Map Sync"


def icon_path(name: str) -> str:
    """Absolute path of an SVG icon shipped in ``resources/icons``."""
    return str(ICONS_DIR / name)


def ui_path(name: str) -> str:
    """Absolute path of a Designer ``.ui`` file shipped in ``ui/``."""
    return str(UI_DIR / name)


def tr(message: str, context: str = "OfflineMapSync") -> str:
    """Translate a user-visible string through Qt's translation system."""
    from qgis.PyQt.QtCore import QCoreApplication

    return QCoreApplication.translate(context, message)
