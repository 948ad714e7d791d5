"""Writes big JSON documents (replica result files) to disk without building them in memory."""

from __future__ import annotations

import json
from typing import IO, Any, Iterable


class StreamList:
    """A JSON array whose items come from an iterable, written one by one; ``length``, when
    known ahead, is its ``len()``."""

    def __init__(self, items: Iterable[Any], length: int | None = None):
        self.items = items
        self.length = length

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("the length of this stream is not known ahead")
        return self.length

    def __iter__(self):
        return iter(self.items)


class StreamDict(dict):
    """A JSON object written key by key (in insertion order), so values may be streams."""


class RawJSON(str):
    """JSON text made already (a feature of a result file): written as it is."""


def write_json(fp: IO[str], value: Any) -> None:
    if isinstance(value, StreamDict):
        fp.write("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                fp.write(",")
            fp.write(json.dumps(str(key)))
            fp.write(":")
            write_json(fp, item)
        fp.write("}")
    elif isinstance(value, StreamList):
        fp.write("[")
        for i, item in enumerate(value.items):
            if i:
                fp.write(",\n")
            write_json(fp, item)
        fp.write("]")
    elif isinstance(value, RawJSON):
        fp.write(value)
    else:
        fp.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def json_text(body: Any) -> str:
    """``json.dumps(body)``, where ``body["features"]`` may be a list of :class:`RawJSON`."""
    features = body.get("features") if isinstance(body, dict) else None
    if not (isinstance(features, list) and features and isinstance(features[0], RawJSON)):
        return json.dumps(body, ensure_ascii=False)
    # "features" written last, empty, then filled: the text ends with '"features": []}'.
    head = json.dumps(
        {**{k: v for k, v in body.items() if k != "features"}, "features": []},
        ensure_ascii=False,
    )
    return head[:-3] + "[" + ",".join(features) + "]}"
