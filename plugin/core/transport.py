"""Reading answers from servers that may be hostile: bounded size, a minimum speed, cancel
while reading, and redirect targets.

``requests`` blocks inside one read until a whole chunk has arrived, so a server that trickles
a byte a second would hold a read (and ignore cancel) for hours. A small watchdog thread checks
cancel and the pace while the body is read, and shuts the connection down when one of them
says stop; the reader then raises the matching error.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from .errors import CancelledError, NetworkError, UnusableAnswerError

CancelCallback = Callable[[], bool]

# Small enough that a slow but acceptable link still completes a chunk within a pace window.
_CHUNK = 1 << 14
#: Redirect hops followed for one request before giving up.
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a server may send.

    ``max_answer_bytes``: a JSON answer (service description, job status, web map) larger than
    this is refused; result files and packages are streamed to disk and have no size limit.
    ``min_bytes_per_second`` over every ``slow_window`` seconds: a body that arrives slower
    than that is given up on.
    """

    max_answer_bytes: int = 64 * 1024 * 1024
    min_bytes_per_second: float = 512.0
    slow_window: float = 60.0


#: The limits used unless a client is given others.
DEFAULT_LIMITS = ReadLimits()


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    connection = getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        return sock
    # NOTE: a "Connection: close" answer leaves the connection without its socket; the
    # response's file object still holds it (http.client internals, stable since Python 3.0).
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(fp, "raw", None), "_sock", None)


class _Watchdog:
    """Stops a body read (by shutting its socket down) on cancel or when it is too slow."""

    def __init__(
        self, response: requests.Response, limits: ReadLimits, cancel: CancelCallback | None
    ) -> None:
        self._response = response
        self._limits = limits
        self._cancel = cancel
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.received = 0
        self.reason: str | None = None
        self._window_start = time.monotonic()
        self._window_bytes = 0
        self._thread = threading.Thread(target=self._watch, name="read-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def count(self, size: int) -> None:
        with self._lock:
            self.received += size
            self._window_bytes += size

    def _watch(self) -> None:
        interval = min(0.1, self._limits.slow_window / 4)
        while not self._done.wait(interval):
            reason = self._stop_reason()
            if reason:
                self.reason = reason
                sock = _socket_of(self._response)
                try:
                    if sock is not None:
                        sock.shutdown(socket.SHUT_RDWR)
                    else:
                        self._response.close()
                except OSError:
                    pass
                return

    def _stop_reason(self) -> str | None:
        if self._cancel is not None and self._cancel():
            return "cancel"
        now = time.monotonic()
        if now - self._window_start >= self._limits.slow_window:
            with self._lock:
                slow = self._window_bytes < self._limits.min_bytes_per_second * (
                    now - self._window_start
                )
                self._window_start, self._window_bytes = now, 0
            if slow:
                return "slow"
        return None

    def raise_if_stopped(self, url: str) -> None:
        if self.reason == "cancel":
            raise CancelledError("The operation was cancelled.")
        if self.reason == "slow":
            limits = self._limits
            raise NetworkError(
                f"The server at {host_of(url)} sent its answer too slowly (less than "
                f"{limits.min_bytes_per_second:.0f} bytes a second for "
                f"{limits.slow_window:.0f} seconds), so it was given up on. Check the network, "
                "or try again later."
            )


def body_chunks(
    response: requests.Response,
    url: str,
    *,
    limits: ReadLimits,
    cancel: CancelCallback | None = None,
    max_bytes: int | None = None,
) -> Iterator[bytes]:
    """The response body in chunks, read under ``limits`` (pace, and ``max_bytes`` when
    given); raises :class:`CancelledError` when ``cancel()`` turns true while reading."""
    with _Watchdog(response, limits, cancel) as watchdog:
        try:
            for chunk in response.iter_content(_CHUNK):
                watchdog.raise_if_stopped(url)
                if not chunk:
                    continue
                watchdog.count(len(chunk))
                if max_bytes is not None and watchdog.received > max_bytes:
                    raise UnusableAnswerError(
                        f"The server's answer from {host_of(url)} is not usable: it is larger "
                        f"than {max_bytes // (1024 * 1024)} MB, far more than any ArcGIS answer "
                        "of this kind. Check the service address.",
                        url=url,
                    )
                yield chunk
        except requests.RequestException:
            watchdog.raise_if_stopped(url)
            raise
        watchdog.raise_if_stopped(url)


def read_answer(
    response: requests.Response,
    url: str,
    *,
    limits: ReadLimits,
    cancel: CancelCallback | None = None,
) -> str:
    """A JSON answer's text, at most ``limits.max_answer_bytes`` long (UTF-8 unless the
    server names another charset)."""
    body = bytearray()
    try:
        for chunk in body_chunks(
            response, url, limits=limits, cancel=cancel, max_bytes=limits.max_answer_bytes
        ):
            body += chunk
    finally:
        response.close()
    encoding = requests.utils.get_encoding_from_headers(response.headers)
    if not encoding or encoding.lower() in ("iso-8859-1", "utf-8", "utf8"):
        # JSON is UTF-8 (RFC 8259); requests' ISO-8859-1 default for text/* is wrong for it.
        encoding = "utf-8-sig"
    try:
        return body.decode(encoding, errors="replace")
    except LookupError:
        return body.decode("utf-8-sig", errors="replace")


def redirect_target(response: requests.Response, url: str) -> str | None:
    """Where a redirect answer points (absolute), without any ``token`` in its query: a token
    is attached afresh for each hop, and only for its own site. None when not a redirect."""
    if not response.is_redirect:
        return None
    target = urljoin(url, response.headers.get("Location") or "")
    parts = urlsplit(target)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
