"""Report files written by the algorithms: JSON for scripts and models, HTML for people."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from ..resources import tr


def write_report(path: str, title: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Write ``summary`` and ``rows`` to ``path``: HTML when it ends in .htm/.html, else JSON."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".html", ".htm"):
        target.write_text(_html(title, summary, rows), encoding="utf-8")
    else:
        data = {"title": title, "summary": summary, "rows": rows}
        target.write_text(
            json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )
    return str(target)


def sync_result_dicts(result) -> list[dict[str, Any]]:
    """One plain dict per layer/table of an ``OfflineMapSyncResult`` (for reports and JSON)."""
    return [layer.as_row() for layer in result.all_results()]


def sync_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """The UPLOADED, DOWNLOADED, EDIT_ERRORS and CONFLICTS totals of ``sync_result_dicts`` rows."""
    return {
        "UPLOADED": sum(r["uploaded"] for r in rows),
        "DOWNLOADED": sum(r["downloaded"] for r in rows),
        "EDIT_ERRORS": sum(len(r["edit_errors"]) for r in rows),
        "CONFLICTS": sum(r["conflicts"] for r in rows),
    }


def sync_row_line(row: dict[str, Any]) -> str:
    """One line of feedback for a ``sync_result_dicts`` row."""
    return tr("{0}: {1} up, {2} down, {3} edit errors, {4} conflicts").format(
        row["name"], row["uploaded"], row["downloaded"], len(row["edit_errors"]), row["conflicts"]
    )


def _html(title: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style>",
        f"</head><body><h1>{esc(title)}</h1><table>",
    ]
    for key, value in summary.items():
        parts.append(f"<tr><th>{esc(str(key))}</th><td>{esc(str(value))}</td></tr>")
    parts.append("</table>")
    if rows:
        columns = list(rows[0])
        parts.append("<h2>Details</h2><table><tr>")
        parts.extend(f"<th>{esc(str(c))}</th>" for c in columns)
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>")
            parts.extend(f"<td>{esc(_cell(row.get(c)))}</td>" for c in columns)
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)
