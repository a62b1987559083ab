"""ThreadJob: the background thread polled like a WorkerProcess (progress, result, failure, cancel)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState
from MedAICommonLib.threadjob import ThreadJob


def _pollUntilFinished(job: ThreadJob, timeoutS: float = 20.0):
    """Poll as the panel's timer does; returns the final status and every progress event seen."""
    deadline, events = time.monotonic() + timeoutS, []
    while True:
        status = job.poll()
        events += status.events
        if status.finished:
            return status, events
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.01)


def test_progress_and_result_reach_the_poller(rng):
    image = rng.normal(size=(64, 64))

    def work(progress, cancelToken):
        total = 0.0
        for row in range(8):
            cancelToken.raiseIfCancelled()
            total += float(image[row * 8 : row * 8 + 8].sum())
            progress((row + 1) / 8, f"block {row + 1}")
        return total

    job = ThreadJob(work)
    assert job.poll().state == WorkerState.NOT_STARTED
    job.start()
    status, events = _pollUntilFinished(job)
    assert status.state == WorkerState.COMPLETED
    assert status.result == pytest.approx(image.sum())
    assert [e.fraction for e in events] == pytest.approx([(i + 1) / 8 for i in range(8)])
    assert [e.message for e in events][-1] == "block 8"
    assert status.fraction == 1.0 and status.message == "block 8"
    # Once finished, polling again gives the same final state and no repeated events.
    again = job.poll()
    assert again.state == WorkerState.COMPLETED and again.events == [] and again.result == status.result
    with pytest.raises(RuntimeError):
        job.start()


def test_failure_gives_the_exception_line():
    def work(progress, cancelToken):
        progress(0.3, "reading")
        raise MedAIInputError("The image is constant.")

    with ThreadJob(work) as job:
        job.start()
        status, _ = _pollUntilFinished(job)
    assert status.state == WorkerState.FAILED
    assert status.errorMessage == "MedAIInputError: The image is constant."
    assert status.result is None and status.fraction == pytest.approx(0.3)


def test_cancel_stops_the_work_through_its_token():
    started, iterations = threading.Event(), []

    def work(progress, cancelToken):
        started.set()
        for index in range(10_000):
            cancelToken.raiseIfCancelled()
            iterations.append(index)
            np.linalg.svd(np.eye(20))
            time.sleep(0.001)
        return "finished"

    job = ThreadJob(work)
    job.start()
    assert started.wait(5)
    job.cancel()
    assert job.wait(5), "the thread did not stop after cancel"
    status, _ = _pollUntilFinished(job)
    assert status.state == WorkerState.CANCELLED and status.result is None
    assert len(iterations) < 10_000


def test_a_result_arriving_after_cancel_is_dropped():
    release = threading.Event()

    def work(progress, cancelToken):
        release.wait(5)  # ignores the token: finishes with a result after the user cancelled
        return 42

    job = ThreadJob(work)
    job.start()
    job.cancel()
    assert job.poll().state == WorkerState.RUNNING  # cancelled only once the thread has ended
    release.set()
    status, _ = _pollUntilFinished(job)
    assert status.state == WorkerState.CANCELLED and status.result is None


def test_close_cancels_a_running_job():
    def work(progress, cancelToken):
        cancelToken.wait(10)
        cancelToken.raiseIfCancelled()
        return "not cancelled"

    job = ThreadJob(work)
    job.start()
    job.close()
    assert job.wait(5)
    assert _pollUntilFinished(job)[0].state == WorkerState.CANCELLED
