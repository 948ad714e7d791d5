"""Esri field types and values <-> GeoPackage column types and values.

Dates are lossless both ways: Esri sends epoch milliseconds (UTC); the GeoPackage stores the
DATETIME text GDAL itself writes (``YYYY-MM-DDTHH:MM:SS.sssZ``), so that a QGIS/OGR edit that
rewrites an unchanged date does not register as a change.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
from typing import Any, Callable

OID = "esriFieldTypeOID"
GLOBALID = "esriFieldTypeGlobalID"
GUID = "esriFieldTypeGUID"
STRING = "esriFieldTypeString"
SMALLINT = "esriFieldTypeSmallInteger"
INTEGER = "esriFieldTypeInteger"
BIGINT = "esriFieldTypeBigInteger"
SINGLE = "esriFieldTypeSingle"
DOUBLE = "esriFieldTypeDouble"
DATE = "esriFieldTypeDate"
DATEONLY = "esriFieldTypeDateOnly"
TIMEONLY = "esriFieldTypeTimeOnly"
TIMESTAMP_OFFSET = "esriFieldTypeTimestampOffset"
BLOB = "esriFieldTypeBlob"
GEOMETRY = "esriFieldTypeGeometry"
RASTER = "esriFieldTypeRaster"
XML = "esriFieldTypeXML"

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_DATETIME_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)


_day_texts: dict[int, str] = {}


def _day_text(days: int) -> str:
    # Downloads carry many dates of the same days: format each day once.
    text = _day_texts.get(days)
    if text is None:
        if len(_day_texts) > 100_000:
            _day_texts.clear()
        day = _dt.date.fromordinal(_EPOCH_ORDINAL + days)
        text = _day_texts[days] = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    return text


# The parts of a time of day as text, made once (a download formats a date per row).
_MINUTE_TEXTS = tuple(f"T{m // 60:02d}:{m % 60:02d}" for m in range(1440))
_SECOND_TEXTS = tuple(f":{s:02d}" for s in range(60))
_MILLI_TEXTS = tuple(f".{ms:03d}Z" for ms in range(1000))


def ms_to_datetime_text(ms: int | float) -> str:
    """Esri epoch milliseconds (UTC) -> ``YYYY-MM-DDTHH:MM:SS.sssZ`` (exact, integer math)."""
    days, rest = divmod(int(round(ms)), _DAY_MS)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return _day_text(days) + _MINUTE_TEXTS[minutes] + _SECOND_TEXTS[seconds] + _MILLI_TEXTS[millis]


def datetime_text_to_ms(text: str) -> int | None:
    """GeoPackage DATETIME/DATE text (any ISO 8601 variant GDAL or QGIS writes) -> epoch ms.

    Text without a time zone is taken as UTC. Returns ``None`` for text that is not a date.
    """
    match = _DATETIME_RE.match(text)
    if not match:
        return None
    year, month, day, hh, mi, ss, frac, tz = match.groups()
    try:
        ordinal = _dt.date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return None
    ms = (ordinal - _EPOCH_ORDINAL) * _DAY_MS
    ms += int(hh or 0) * 3_600_000 + int(mi or 0) * 60_000 + int(ss or 0) * 1000
    if frac:
        ms += int(round(int(frac) / 10 ** len(frac) * 1000))
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 60 + int(digits[2:])
        ms -= sign * offset * 60_000
    return ms


def normalize_guid(value: Any) -> str | None:
    """A GUID as the braced, upper-case form ArcGIS uses (``{8C4B...}``)."""
    if value is None:
        return None
    if type(value) is str and value[:1] == "{" and value[-1:] == "}" and value.isupper():
        return value  # already so (the usual case: one per downloaded row)
    text = str(value).strip()
    if not text:
        return None
    if not text.startswith("{"):
        text = "{" + text + "}"
    return text.upper()


_GUID_RE = re.compile(r"\{[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\}")
_GUID_EDGES_RE = re.compile(r"^[{}\s]+|[{}\s]+$")


def guid_key(value: Any) -> str | None:
    """What a GUID (a GlobalID, a replica ID) is compared by: :func:`normalize_guid`'s form
    for a well-formed one, so braces, case and surrounding whitespace do not matter.

    An id that is not a GUID (from a damaged file or an odd server) is compared as text,
    ignoring the same things; its key can never equal a well-formed GUID's. None for no id.
    """
    text = normalize_guid(value)
    if text is None or _GUID_RE.fullmatch(text):
        return text
    bare = _GUID_EDGES_RE.sub("", text).lower()
    return "?" + bare if bare else None  # "?": apart from every well-formed key


def same_guid(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` name the same GUID (see :func:`guid_key`); never for no id."""
    key = guid_key(a)
    return key is not None and key == guid_key(b)


def _to_gpkg_date(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return ms_to_datetime_text(value)


def _to_gpkg_dateonly(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return ms_to_datetime_text(value)[:10]


def _to_gpkg_blob(value: Any) -> Any:
    if isinstance(value, str):
        return base64.b64decode(value)
    return value


def _to_esri_date(value: Any) -> Any:
    if isinstance(value, str):
        ms = datetime_text_to_ms(value)
        return value if ms is None else ms
    return value


def _to_esri_blob(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def to_gpkg_converter(esri_type: str) -> Callable[[Any], Any] | None:
    """Converter for values arriving from the service (``None`` = store as is)."""
    if esri_type == DATE:
        return _to_gpkg_date
    if esri_type == DATEONLY:
        return _to_gpkg_dateonly
    if esri_type in (GLOBALID, GUID):
        return normalize_guid
    if esri_type == BLOB:
        return _to_gpkg_blob
    return None


def to_esri_converter(esri_type: str) -> Callable[[Any], Any] | None:
    """Converter for values sent to the service (``None`` = send as is)."""
    if esri_type == DATE:
        return _to_esri_date
    if esri_type == BLOB:
        return _to_esri_blob
    if esri_type in (GLOBALID, GUID):
        return normalize_guid  # people type GUIDs in any case, with or without braces
    return None


def json_safe(value: Any) -> Any:
    """A column value as JSON (blobs as ``{"$base64": ...}``); reversed by :func:`from_json_safe`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def from_json_safe(value: Any) -> Any:
    if isinstance(value, dict) and "$base64" in value:
        return base64.b64decode(value["$base64"])
    return value


__all__ = [
    "ms_to_datetime_text",
    "datetime_text_to_ms",
    "normalize_guid",
    "guid_key",
    "same_guid",
    "to_gpkg_converter",
    "to_esri_converter",
    "json_safe",
    "from_json_safe",
]
