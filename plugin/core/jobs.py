"""A long-running core operation with progress, messages and cancellation (SDK ``Job``).

Jobs run either in the caller's thread (:meth:`Job.run`, what a ``QgsTask`` or a Processing
algorithm calls) or in a thread of their own (:meth:`Job.start`). Progress, messages and the
cancel flag are safe to read and set from any thread.
"""

from __future__ import annotations

import threading
from enum import Enum
from typing import Any, Callable, Generic, TypeVar

from .errors import CancelledError

T = TypeVar("T")

ProgressListener = Callable[[int, str], None]


class JobStatus(str, Enum):
    """SDK ``JobStatus`` (without Paused: core jobs cannot pause)."""

    NOT_STARTED = "notStarted"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Generic[T]):
    """Base class: subclasses implement :meth:`_execute`, calling :meth:`_report` and
    :meth:`_check_cancelled` as they go.

    A job runs once. ``result`` holds what ``_execute`` returned; ``error`` the exception it
    raised (a :class:`~plugin.core.errors.CancelledError` when cancelled).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancel_event = threading.Event()
        self._done_event = threading.Event()
        self._status = JobStatus.NOT_STARTED
        self._progress = 0
        self._message = ""
        self._messages: list[str] = []
        self._listeners: list[ProgressListener] = []
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- state, readable from any thread -------------------------------------------------
    @property
    def status(self) -> JobStatus:
        with self._lock:
            return self._status

    @property
    def progress(self) -> int:
        """Overall progress in percent, 0-100; it never goes backwards."""
        with self._lock:
            return self._progress

    @property
    def message(self) -> str:
        """The latest progress message."""
        with self._lock:
            return self._message

    @property
    def messages(self) -> list[str]:
        """Every message reported so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def result(self) -> T | None:
        with self._lock:
            return self._result

    @property
    def error(self) -> BaseException | None:
        with self._lock:
            return self._error

    @property
    def is_cancelled(self) -> bool:
        return self._cancel_event.is_set()

    def add_progress_listener(self, listener: ProgressListener) -> None:
        """Call ``listener(percent, message)`` on every progress report, in the job's thread."""
        with self._lock:
            self._listeners.append(listener)

    # -- control ---------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the job to stop at its next safe point; it then fails with CancelledError."""
        self._cancel_event.set()

    def run(self) -> T:
        """Run in the calling thread and return the result (or raise the job's error)."""
        with self._lock:
            if self._status != JobStatus.NOT_STARTED:
                raise RuntimeError("A job can only run once.")
            self._status = JobStatus.STARTED
        try:
            result = self._execute()
        except BaseException as error:
            with self._lock:
                self._error = error
                self._status = JobStatus.FAILED
            self._done_event.set()
            raise
        with self._lock:
            self._result = result
            self._progress = 100
            self._status = JobStatus.SUCCEEDED
            message, listeners = self._message, list(self._listeners)
        try:
            for listener in listeners:
                listener(100, message)
        finally:
            # wait() must return even if a listener fails on the final report.
            self._done_event.set()
        return result

    def start(self) -> Job[T]:
        """Run in a background thread; follow it with ``progress``/``wait()``."""
        # Errors are kept in ``error``; the thread must not print a traceback for them.
        self._thread = threading.Thread(target=self._run_quietly, name=type(self).__name__)
        self._thread.daemon = True
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (True) or ``timeout`` seconds passed (False)."""
        return self._done_event.wait(timeout)

    # -- for subclasses --------------------------------------------------------------------
    def _execute(self) -> T:
        raise NotImplementedError

    def _report(self, fraction: float | None, message: str = "") -> None:
        """Report overall progress (``fraction`` 0..1, None = unchanged) and a message."""
        with self._lock:
            if fraction is not None:
                percent = int(max(0.0, min(1.0, fraction)) * 100)
                self._progress = max(self._progress, min(percent, 99))
            if message:
                self._message = message
                if not self._messages or self._messages[-1] != message:
                    self._messages.append(message)
            percent, text, listeners = self._progress, self._message, list(self._listeners)
        for listener in listeners:
            listener(percent, text)

    def _sub_progress(self, start: float, end: float) -> Callable[[float | None, str], None]:
        """A ``progress(fraction, message)`` callback mapping 0..1 onto ``start..end``."""
        return sub_progress(self._report, start, end)

    def _cancel_requested(self) -> bool:
        """The ``cancel()`` callback handed to the REST client and the geodatabase."""
        return self._cancel_event.is_set()

    def _check_cancelled(self) -> None:
        if self._cancel_event.is_set():
            raise CancelledError("The operation was cancelled.")

    def _run_quietly(self) -> Any:
        try:
            self.run()
        except BaseException:
            pass


def sub_progress(
    progress: Callable[[float | None, str], None], start: float, end: float
) -> Callable[[float | None, str], None]:
    """A ``progress(fraction, message)`` callback reporting 0..1 as ``start..end`` of
    ``progress`` (None, "still busy", stays None)."""

    def report(fraction: float | None, message: str = "") -> None:
        progress(None if fraction is None else start + (end - start) * fraction, message)

    return report
