"""Streaming reader for replica result files (createReplica, synchronizeReplica, update packages).

A result file can hold hundreds of thousands of features, so it is never loaded whole: the file
is read in chunks, a tiny structural walker follows the objects and arrays that frame the data,
and each array element (one feature, one attachment, one edit result) is decoded on its own with
``json.JSONDecoder.raw_decode``. Memory stays flat whatever the file size.

Shape handled (protocol spec §2-3)::

    {<top-level values>..., "layers": [{"id": 0, "features": [...], "attachments": [...]}],
                            "edits":  [{"id": 0, "features": {"adds": [...], ...},
                                        "addResults": [...], "attachmentResults": {...}}]}

Events are ``(layer_id, section, item)``; the section is the dotted path of the array inside
the layer entry: ``"features"``, ``"features.adds"``, ``"attachments.deleteIds"``,
``"addResults"``, ``"attachmentResults.addResults"``...
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO, Tuple, Union

from .errors import ServiceError, UnusableAnswerError

Event = Tuple[int, str, Any]

#: Top-level keys whose value is a list of per-layer entries streamed as events.
LAYER_ARRAYS = ("layers", "edits")

_CHUNK = 1 << 16
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
#: Attempts to decode several array elements at once that may fail before the reader stops
#: trying (each failure costs a decode of up to a chunk: text built to mislead stays cheap).
_BATCH_MISSES = 16
#: Elements decoded together span about this many characters (a few dozen features): they are
#: converted while they are still in the processor's cache.
_BATCH_CHARS = 1 << 14


def read_result(path: Union[str, Path]) -> tuple[dict, Iterator[Event]]:
    """Open a result file and return ``(header, events)``.

    ``header`` holds every top-level value except the layer arrays, with ``replicaServerGen``
    parsed to ``int`` and ``layerServerGens`` to ``dict[int, int]`` (it may arrive as a list, a
    mapping or a JSON-encoded string; generations may be strings). Values that come before the
    layer arrays are in ``header`` on return; values after them are added while ``events`` is
    consumed, so the header is complete once the iterator is exhausted.

    Raises :class:`ServiceError` right away for a file that is not a JSON object (an HTML page,
    an empty file), and while iterating for a file that is cut off or malformed.
    """
    header: dict = {}
    stream = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed by the generator
    try:
        generator = _walk_result(_Reader(stream, str(path)), header)
        first = _too_deep_is_unusable(lambda: next(generator, None))
    except BaseException:
        stream.close()
        raise
    if first is None:
        stream.close()
        return header, iter(())
    return header, _chain_first(first, generator, stream)


def _chain_first(first: Event, rest: Iterator[Event], stream: TextIO) -> Iterator[Event]:
    try:
        yield first
        while True:
            event = _too_deep_is_unusable(lambda: next(rest, None))
            if event is None:
                return
            yield event
    finally:
        stream.close()


def _too_deep_is_unusable(step: Callable[[], Any]) -> Any:
    # Python's JSON decoder (and this walker) recurse per nesting level: 100,000 nested "["
    # would escape as a RecursionError.
    try:
        return step()
    except RecursionError:
        raise UnusableAnswerError(
            "The result file from the server is not usable: it is nested too deeply to be an "
            "ArcGIS result."
        ) from None


def parse_generation(value: Any) -> int:
    """A server generation as a 64-bit integer (numbers or strings occur in the wild)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a generation: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else int(float(text))
    return int(value)


def parse_layer_server_gens(value: Any) -> dict[int, int]:
    """``layerServerGens`` as ``{layer id: generation}``.

    Accepts ``[{"id": 0, "serverGen": 5}]``, ``{"0": 5}`` and either of them JSON-encoded in a
    string.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        return {int(k): parse_generation(v) for k, v in value.items()}
    gens = {}
    for entry in value:
        gen = entry.get("serverGen", entry.get("serverGeneration"))
        gens[int(entry["id"])] = parse_generation(gen)
    return gens


def _normalise_header_value(key: str, value: Any) -> Any:
    try:
        if key == "replicaServerGen" and value is not None:
            return parse_generation(value)
        if key == "layerServerGens":
            return parse_layer_server_gens(value)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ServiceError(
            f"The server sent an unreadable generation ({key}): {error}", code=None
        ) from error
    return value


class _Reader:
    """A growing text buffer over a file, with the few primitives the walker needs."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.batch_misses = 0

    def fill(self, at_least: int = _CHUNK) -> bool:
        """Append more text (dropping what was consumed). False at end of file."""
        if self.eof:
            return False
        chunk = self.stream.read(max(at_least, _CHUNK))
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        """The next non-whitespace character ('' at end of file), without consuming it."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            self.fail(f"expected {' or '.join(repr(c) for c in chars)}", incomplete=not char)
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode the JSON value starting at the next non-whitespace character."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as error:
                # Most likely the value continues in the next chunk; grow geometrically so a
                # huge element costs linear time overall.
                if self.fill(len(self.buf) - self.pos):
                    continue
                cut_off = error.pos >= len(self.buf.rstrip()) or error.msg.startswith(
                    "Unterminated"
                )
                self.fail(error.msg, incomplete=cut_off)
            # A number that ends exactly at the buffer's end may continue in the next chunk.
            if end == len(self.buf) and self.fill(len(self.buf) - self.pos):
                continue
            self.pos = end
            return value

    def values(self) -> list:
        """The array element starting at the next non-whitespace character, with the elements
        after it that are wholly in the buffer when they are objects: those are decoded in one
        call, much faster than one by one (the decoder makes each key once per call)."""
        if self.peek() == "{" and self.batch_misses < _BATCH_MISSES:
            end = self._last_element_end()
            if end is None and len(self.buf) - self.pos < _BATCH_CHARS and self.fill():
                end = self._last_element_end()  # the buffer ended inside its first element
            if end is not None:
                text = "[" + self.buf[self.pos : end] + "]"
                try:
                    items, stop = _DECODER.raw_decode(text)
                except (json.JSONDecodeError, RecursionError):
                    stop = None
                if stop is not None:
                    # The added "]" ended the elements, or the array's own end came first (a
                    # cut inside a string or a nested object fails instead).
                    self.pos = end if stop == len(text) else self.pos + stop - 2
                    return items
                self.batch_misses += 1
        return [self.value()]

    def _last_element_end(self) -> int | None:
        """Just after the last ``}`` within :data:`_BATCH_CHARS` of the buffer that ``,`` and
        ``{`` follow (the end of an element of an array of objects, most likely), if one is
        found quickly."""
        buf, cut = self.buf, min(len(self.buf), self.pos + _BATCH_CHARS)
        for _ in range(8):
            cut = buf.rfind("}", self.pos, cut)
            if cut < 0:
                return None
            comma = _WHITESPACE.match(buf, cut + 1).end()
            if buf.startswith(",", comma) and buf.startswith(
                "{", _WHITESPACE.match(buf, comma + 1).end()
            ):
                return cut + 1
        return None

    def string(self) -> str:
        char = self.peek()
        if char != '"':
            self.fail("expected a key", incomplete=not char)
        return self.value()

    def fail(self, what: str, *, incomplete: bool = False) -> None:
        if incomplete:
            message = "The result file from the server is incomplete (it ends too early)."
        else:
            message = f"The result file from the server is not valid JSON: {what}."
        raise ServiceError(message)


def _walk_result(reader: _Reader, header: dict) -> Iterator[Event]:
    first = reader.peek()
    if first != "{":
        if first == "<":
            raise ServiceError(
                "The server sent a web page instead of the result file; the file may have expired."
            )
        if not first:
            raise ServiceError("The result file from the server is empty.")
        reader.fail("the file does not start with an object")
    reader.pos += 1
    if reader.peek() == "}":
        reader.pos += 1
        return
    while True:
        key = reader.string()
        reader.expect(":")
        if key in LAYER_ARRAYS and reader.peek() == "[":
            yield from _walk_layer_array(reader)
        else:
            header[key] = _normalise_header_value(key, reader.value())
        if reader.expect(",}") == "}":
            return


def _walk_layer_array(reader: _Reader) -> Iterator[Event]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.pos += 1
        return
    while True:
        if reader.peek() == "{":
            yield from _walk_layer_entry(reader)
        else:
            reader.value()  # not a layer entry: nothing to stream
        if reader.expect(",]") == "]":
            return


def _walk_layer_entry(reader: _Reader) -> Iterator[Event]:
    # Events seen before the entry's "id" are held until it arrives (rare: the id normally
    # comes first, so memory stays flat in practice).
    state: dict[str, Any] = {"id": None, "held": []}
    yield from _walk_object(reader, "", state)
    if state["id"] is None:
        if state["held"]:
            raise ServiceError("The result file has a layer entry without a layer id.")
        return
    for section, item in state["held"]:
        yield state["id"], section, item


def _walk_object(reader: _Reader, prefix: str, state: dict) -> Iterator[Event]:
    reader.expect("{")
    if reader.peek() == "}":
        reader.pos += 1
        return
    while True:
        key = reader.string()
        reader.expect(":")
        section = prefix + key
        char = reader.peek()
        if char == "[":
            yield from _walk_array(reader, section, state)
        elif char == "{":
            yield from _walk_object(reader, section + ".", state)
        else:
            value = reader.value()
            if not prefix and key == "id":
                try:
                    state["id"] = int(value)
                except (TypeError, ValueError):
                    raise ServiceError(
                        f"The result file has an invalid layer id: {value!r}."
                    ) from None
                held, state["held"] = state["held"], []
                for held_section, item in held:
                    yield state["id"], held_section, item
        if reader.expect(",}") == "}":
            return


def _walk_array(reader: _Reader, section: str, state: dict) -> Iterator[Event]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.pos += 1
        return
    while True:
        for item in reader.values():
            if state["id"] is None:
                state["held"].append((section, item))
            else:
                yield state["id"], section, item
        if reader.expect(",]") == "]":
            return
