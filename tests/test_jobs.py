"""The core Job base class: progress, messages, cancellation, result and error."""

from __future__ import annotations

import threading

import pytest

from plugin.core.errors import CancelledError, ServiceError
from plugin.core.jobs import Job, JobStatus


class Steps(Job[str]):
    """Reports each fraction in turn; optionally fails or waits for a release."""

    def __init__(self, fractions, fail=None, release: threading.Event | None = None) -> None:
        super().__init__()
        self.fractions = fractions
        self.fail = fail
        self.release = release

    def _execute(self) -> str:
        for fraction in self.fractions:
            self._report(fraction, f"step {fraction}")
            if self.release is not None:
                self.release.wait(10)
            self._check_cancelled()
        if self.fail is not None:
            raise self.fail
        return "done"


def test_run_returns_the_result_and_ends_at_100_percent():
    job = Steps([0.1, 0.5, 0.9])
    seen = []
    job.add_progress_listener(lambda percent, message: seen.append((percent, message)))
    assert job.status is JobStatus.NOT_STARTED
    assert job.run() == "done"
    assert job.result == "done" and job.error is None
    assert job.status is JobStatus.SUCCEEDED
    assert [p for p, _ in seen] == [10, 50, 90, 100]
    assert job.messages == ["step 0.1", "step 0.5", "step 0.9"]


def test_progress_never_goes_backwards_nor_reaches_100_before_the_end():
    job = Steps([0.6, 0.2, 1.0])
    seen = []
    job.add_progress_listener(lambda percent, message: seen.append(percent))
    job.run()
    assert seen == [60, 60, 99, 100]


def test_error_is_raised_and_kept():
    error = ServiceError("The server said no.")
    job = Steps([0.5], fail=error)
    with pytest.raises(ServiceError):
        job.run()
    assert job.error is error and job.status is JobStatus.FAILED and job.result is None


def test_a_job_runs_only_once():
    job = Steps([])
    job.run()
    with pytest.raises(RuntimeError):
        job.run()


def test_cancel_from_another_thread_ends_a_started_job_with_cancelled_error():
    release = threading.Event()
    job = Steps([0.1, 0.2, 0.3], release=release).start()
    assert not job.wait(0.2)
    job.cancel()
    release.set()
    assert job.wait(10)
    assert job.is_cancelled
    assert isinstance(job.error, CancelledError)
    assert job.status is JobStatus.FAILED
    assert job.progress < 100


def test_sub_progress_maps_a_step_onto_its_share():
    job = Steps([])
    step = job._sub_progress(0.5, 0.7)
    step(0.5, "half of the second part")
    assert job.progress == 60 and job.message == "half of the second part"
    step(None, "only a message")
    assert job.progress == 60 and job.message == "only a message"
