"""A core job runs in QGIS's task manager: progress and cancel are bridged, errors come back."""

from __future__ import annotations

import threading
import time

import pytest
from qgis.core import QgsApplication

from plugin.core.errors import CancelledError, ServiceError
from plugin.core.jobs import Job
from plugin.task import JobTask, start_job_task, wait_for_task


class CountingJob(Job):
    """Reports progress in steps and returns the thread it ran in."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        self.steps = steps

    def _execute(self):
        for step in range(self.steps):
            self._check_cancelled()
            self._report((step + 1) / self.steps, f"step {step + 1}")
            time.sleep(0.01)
        return threading.get_ident()


class WaitingJob(Job):
    """Runs until cancelled (bounded), checking the cancel flag like core jobs do."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()

    def _execute(self):
        self.started.set()
        for _ in range(1000):
            self._report(0.1, "waiting")
            self._check_cancelled()
            time.sleep(0.01)
        return "not cancelled"


class FailingJob(Job):
    def _execute(self):
        self._report(0.5, "half way")
        raise ServiceError("The service refused the request.", code=400)


class BuggyJob(Job):
    def _execute(self):
        raise ZeroDivisionError("bug")


def test_job_runs_off_the_main_thread_and_reports_progress(qgis_app):
    job = CountingJob()
    messages = []
    finished_on = []
    task = JobTask("count", job, on_done=lambda t: finished_on.append(threading.get_ident()))
    task.progress_message.connect(lambda percent, message: messages.append((percent, message)))
    QgsApplication.taskManager().addTask(task)

    assert wait_for_task(task, 30)
    assert task.succeeded
    assert task.error is None
    assert task.result != threading.get_ident()  # the job ran in a worker thread
    assert finished_on == [threading.get_ident()]  # finished() ran on the main thread
    assert list(dict.fromkeys(m for _, m in messages)) == ["step 1", "step 2", "step 3", "step 4"]
    percents = [p for p, _ in messages]
    assert percents == sorted(percents)
    assert max(p for p, m in messages if m != "step 4") < 100  # 100 only once the job is done
    assert percents[-1] == 100
    assert job.progress == 100


def test_cancelling_the_task_cancels_the_job(qgis_app):
    job = WaitingJob()
    task = start_job_task("wait", job)
    assert job.started.wait(10)
    task.cancel()

    assert wait_for_task(task, 30)
    assert not task.succeeded
    assert task.cancelled
    assert isinstance(task.error, CancelledError)
    assert job.is_cancelled


def test_cancel_from_the_task_manager_reaches_the_job(qgis_app):
    job = WaitingJob()
    task = start_job_task("wait", job)
    assert job.started.wait(10)
    QgsApplication.taskManager().cancelAll()

    assert wait_for_task(task, 30)
    assert task.cancelled


def test_a_job_error_comes_back_with_its_message_and_the_task_does_not_raise(qgis_app):
    done = []
    task = start_job_task("fail", FailingJob())
    task.done.connect(lambda t: done.append(t))

    assert wait_for_task(task, 30)
    assert not task.succeeded
    assert isinstance(task.error, ServiceError)
    assert str(task.error) == "The service refused the request."
    assert task.error_details == ""  # an expected error is not a bug report
    assert done == [task]


def test_an_unexpected_exception_is_kept_with_its_traceback(qgis_app):
    task = start_job_task("bug", BuggyJob())

    assert wait_for_task(task, 30)
    assert isinstance(task.error, ZeroDivisionError)
    assert "ZeroDivisionError" in task.error_details


def test_wait_for_task_gives_up_after_its_timeout(qgis_app):
    job = WaitingJob()
    task = start_job_task("wait", job)
    try:
        assert job.started.wait(10)
        assert not wait_for_task(task, 0.2)
    finally:
        task.cancel()
        assert wait_for_task(task, 30)


@pytest.fixture(autouse=True)
def _no_leftover_tasks(qgis_app):
    yield
    QgsApplication.taskManager().cancelAll()
