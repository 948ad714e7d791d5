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
