"""Runs a core :class:`~plugin.core.jobs.Job` as a ``QgsTask`` in QGIS's task manager.

The task is the only bridge between a job and Qt: it forwards the job's progress to the task
manager, forwards a cancel from the task manager (or the dock) to the job, and hands the result
or the error back on the main thread. ``run()`` executes core code only: it never touches the
project, layers or widgets, and it never raises.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .core.errors import CancelledError, OfflineMapSyncError
from .core.jobs import Job
from .resources import PLUGIN_NAME, tr

# Tasks are owned by QGIS's task manager, but their Python side (job, callbacks) must stay alive
# until finished() ran; we keep a reference here until then.
_RUNNING: set[JobTask] = set()


class JobTask(QgsTask):
    """A ``QgsTask`` that runs one core job.

    Signals (delivered on the main thread when connected there):
    ``progress_message(percent, message)`` for every job report, and ``done(task)`` once, after
    the job finished, failed or was cancelled. Afterwards ``result`` holds what the job returned
    and ``error`` the exception it raised (``CancelledError`` when cancelled), else None.
    """

    progress_message = pyqtSignal(int, str)
    done = pyqtSignal(object)

    def __init__(
        self,
        description: str,
        job: Job,
        *,
        on_done: Callable[[JobTask], None] | None = None,
        can_cancel: bool = True,
    ) -> None:
        flags = QgsTask.Flag.CanCancel if can_cancel else QgsTask.Flag(0)
        super().__init__(description, flags)
        self.job = job
        self.result: Any = None
        self.error: BaseException | None = None
        self.error_details = ""
        self._on_done = on_done
        self._finished = threading.Event()
        self._completed = False

    # -- worker thread ---------------------------------------------------------------------
    def run(self) -> bool:  # noqa: D102 (QgsTask API)
        self.job.add_progress_listener(self._job_progress)
        if self.isCanceled():
            self.job.cancel()
        try:
            self.result = self.job.run()
            return True
        except CancelledError as error:
            self.error = error
        except OfflineMapSyncError as error:
            self.error = error
        except BaseException as error:  # noqa: BLE001 (run() must never raise into QGIS)
            # An unexpected failure is a bug: keep the traceback for the log, not the user.
            self.error = error
            self.error_details = traceback.format_exc()
        return False

    def _job_progress(self, percent: int, message: str) -> None:
        # Called in the worker thread; setProgress and signal emission are thread-safe.
        if self.isCanceled():
            self.job.cancel()
        self.setProgress(float(percent))
        self.progress_message.emit(int(percent), message)

    # -- any thread ------------------------------------------------------------------------
    def cancel(self) -> None:  # noqa: D102 (QgsTask API)
        self.job.cancel()
        super().cancel()

    # -- main thread -----------------------------------------------------------------------
    def finished(self, result: bool) -> None:  # noqa: D102 (QgsTask API)
        self._completed = bool(result)
        try:
            if not result and self.error is None:
                # Cancelled before run() started: the job never ran.
                self.error = CancelledError(tr("The operation was cancelled."))
            if self.error_details:
                QgsMessageLog.logMessage(
                    tr("Unexpected error in '{0}':\n{1}").format(
                        self.description(), self.error_details
                    ),
                    PLUGIN_NAME,
                    Qgis.MessageLevel.Critical,
                )
            if self._on_done is not None:
                self._on_done(self)
            self.done.emit(self)
        except Exception:  # noqa: BLE001 (an exception here would be lost inside QGIS)
            QgsMessageLog.logMessage(
                traceback.format_exc(), PLUGIN_NAME, Qgis.MessageLevel.Critical
            )
        finally:
            self._finished.set()
            _RUNNING.discard(self)

    # The task manager deletes the C++ task after finished(): these read Python state only.
    @property
    def is_finished(self) -> bool:
        """True once ``finished()`` ran on the main thread."""
        return self._finished.is_set()

    @property
    def succeeded(self) -> bool:
        """True when the job returned a result (only meaningful after ``done``)."""
        return self._completed and self.error is None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)


def start_job_task(
    description: str,
    job: Job,
    *,
    on_done: Callable[[JobTask], None] | None = None,
    can_cancel: bool = True,
) -> JobTask:
    """Create a :class:`JobTask` for ``job``, add it to QGIS's task manager and return it."""
    task = JobTask(description, job, on_done=on_done, can_cancel=can_cancel)
    _RUNNING.add(task)
    QgsApplication.taskManager().addTask(task)
    return task


def wait_for_task(task: JobTask, timeout: float = 60.0) -> bool:
    """Process Qt events until ``task`` has delivered ``done`` or ``timeout`` seconds passed.

    For scripts and tests that must block on the main thread; the dock never calls it.
    """
    import time

    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout
    while not task.is_finished and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    return task.is_finished


class CallJob(Job):
    """A job that calls one function (e.g. a core check that may go to the network) so that it
    can run as a task; the function's return value is the result."""

    def __init__(self, function: Callable[[], Any], message: str = "") -> None:
        super().__init__()
        self._function = function
        self._start_message = message

    def _execute(self) -> Any:
        self._report(0.0, self._start_message)
        return self._function()
