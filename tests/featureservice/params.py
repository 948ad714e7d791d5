"""Request parameters: query string and form fields, names case-insensitive (as ArcGIS)."""

from __future__ import annotations

from typing import Any

from .errors import bad_request

MAX_INT = 2**62


class Params:
    """Read-only view of a request's parameters with ArcGIS's loose typing."""

    def __init__(self, values: dict[str, Any]):
        self._values = {str(k).lower(): v for k, v in values.items()}

    @classmethod
    def from_request(cls, request) -> Params:
        values: dict[str, Any] = {}
        for source in (request.args, request.form):
            for key in source:
                values[key] = source.get(key)
        return cls(values)

    def get(self, name: str, default: Any = None) -> Any:
        value = self._values.get(name.lower(), default)
        return value

    def has(self, name: str) -> bool:
        return name.lower() in self._values

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise bad_request(f"'{name}' must be true or false (got '{str(value)[:40]}').")

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(str(value).strip())
        except ValueError as exc:
            raise bad_request(f"'{name}' must be an integer (got '{str(value)[:40]}').") from exc
        if abs(number) > MAX_INT:
            raise bad_request(f"'{name}' is out of range.")
        return number

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)
