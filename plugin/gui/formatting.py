"""Small text helpers shared by the panel and the dialogs."""

from __future__ import annotations

import html


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
