"""Small text and layout helpers shared by the panel and the dialogs."""

from __future__ import annotations

import html

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QHeaderView, QMessageBox, QWidget


def size_text(size: float) -> str:
    """A byte count for people: ``"512 bytes"``, ``"1.5 MB"``."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024.0
    return str(size)


def escape(text: str) -> str:
    """``text`` safe to put into a rich-text label."""
    return html.escape(text, quote=False)


def tooltip(text: str) -> str:
    """``text`` (from a server or a file) as a tooltip that shows it literally.

    Qt renders a tooltip that looks like HTML as rich text: it would load ``<img src=…>`` and
    make ``<a href=…>`` clickable. Escaped inside a rich-text paragraph, it reads as typed.
    """
    return "<p style='white-space:pre-wrap'>" + escape(text) + "</p>"


def name_column_stretches(header: QHeaderView) -> None:
    """The first column (names) takes the width left; the others are as wide as their
    contents (counts, types, sizes)."""
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for column in range(1, header.count()):
        header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)


def ask(
    parent: QWidget | None,
    title: str,
    text: str,
    buttons: QMessageBox.StandardButton,
    default: QMessageBox.StandardButton,
    icon: QMessageBox.Icon = QMessageBox.Icon.Question,
) -> QMessageBox.StandardButton:
    """A question (or, with ``icon``, a notice) whose text is shown as plain text: it may
    quote a server, a layer or a file name."""
    box = QMessageBox(icon, title, text, buttons, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setDefaultButton(default)
    return QMessageBox.StandardButton(box.exec())
