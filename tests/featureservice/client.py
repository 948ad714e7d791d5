"""Tiny HTTP helpers for tests talking to the reference service (JSON in, JSON out)."""

from __future__ import annotations

import json
from typing import Any

import requests

TIMEOUT = 30


def _encode(params: dict[str, Any]) -> dict[str, Any]:
    out = {"f": "json"}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value
    return out


def _json(response: requests.Response) -> Any:
    # Error bodies are JSON whatever the HTTP status; anything else is a real failure.
    if "json" not in response.headers.get("Content-Type", ""):
        response.raise_for_status()
    return response.json()


def get(url: str, **params: Any) -> Any:
    return _json(requests.get(url, params=_encode(params), timeout=TIMEOUT))


def post(url: str, **params: Any) -> Any:
    return _json(requests.post(url, data=_encode(params), timeout=TIMEOUT))


def error_code(body: Any) -> int | None:
    return body.get("error", {}).get("code") if isinstance(body, dict) else None
