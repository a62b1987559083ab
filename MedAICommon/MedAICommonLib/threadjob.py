"""A background thread with the poll/cancel interface of :class:`~MedAICommonLib.worker.WorkerProcess`.

For work that is numpy or SimpleITK only (no Qt, no MRML) and fast enough not to need a separate
process, e.g. the watershed's :meth:`WatershedJob.compute`. The thread calls
``function(progress, cancelToken)``; the caller (a ``QTimer`` in the desktop) calls :meth:`ThreadJob.poll`,
which never blocks and returns a :class:`~MedAICommonLib.worker.WorkerStatus`, so the same job runner
drives either kind of job. Cancelling sets the :class:`~MedAICommonLib.jobs.CancelToken`: the work
stops at its next check, and the state becomes ``cancelled`` only once the thread has ended, so
nothing it computed is used while it may still be running.

Example::

    job = ThreadJob(lambda progress, cancelToken: heavy(progress=progress, cancelToken=cancelToken))
    job.start()
    while not (status := job.poll()).finished:
        time.sleep(0.1)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import MedAICancelledError
from .jobs import CancelToken, ProgressCallback
from .worker import WorkerState, WorkerStatus
from .workerprotocol import WorkerEvent

__all__ = ["ThreadJob"]


class ThreadJob:
    """Runs ``function(progress, cancelToken)`` in a daemon thread; poll it from the owning thread.

    Args:
        function: the work; it must not touch Qt or MRML. It returns the result (``status.result``);
            raising :class:`MedAICancelledError` means cancelled, any other exception means failed
            (``status.errorMessage`` is ``"ExceptionClass: message"``, as a worker's last stderr line).
        name: the thread's name (shown in debuggers).

    Call :meth:`start`, :meth:`poll`, :meth:`cancel` and :meth:`close` from one thread (the GUI's).
    """

    def __init__(self, function: Callable[[ProgressCallback, CancelToken], Any], name: str = "MedAIThreadJob") -> None:
        self._function = function
        self.cancelToken = CancelToken()
        self._lock = threading.Lock()
        self._events: list[WorkerEvent] = []
        self._fraction, self._message = 0.0, ""
        self._outcome: tuple[WorkerState, Any, str] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._status = WorkerStatus(WorkerState.NOT_STARTED)

    @property
    def state(self) -> WorkerState:
        return self._status.state

    def start(self) -> None:
        """Start the thread (once)."""
        if self._status.state != WorkerState.NOT_STARTED:
            raise RuntimeError("A ThreadJob can be started only once.")
        self._status.state = WorkerState.RUNNING
        self._thread.start()

    def poll(self) -> WorkerStatus:
        """Progress events since the last call and the current state; never blocks."""
        with self._lock:
            events, self._events = self._events, []
            fraction, message, outcome = self._fraction, self._message, self._outcome
        status = self._status
        if status.finished or status.state == WorkerState.NOT_STARTED:
            return WorkerStatus(status.state, [], status.fraction, status.message, status.result, status.errorMessage)
        status.fraction, status.message = fraction, message
        if outcome is not None:
            state, result, errorMessage = outcome
            # A result that arrives after Cancel is dropped: the user asked for the scene to stay as it was.
            if self.cancelToken.cancelled:
                state, result, errorMessage = WorkerState.CANCELLED, None, ""
            status.state, status.result, status.errorMessage = state, result, errorMessage
            if state == WorkerState.CANCELLED:
                status.message = "Cancelled"
        return WorkerStatus(status.state, events, status.fraction, status.message, status.result, status.errorMessage)

    def cancel(self) -> None:
        """Ask the work to stop at its next check; :meth:`poll` says ``cancelled`` once the thread ended."""
        self.cancelToken.cancel()

    def wait(self, timeoutS: float | None = None) -> bool:
        """Block up to ``timeoutS`` seconds for the thread to end (tests, scripts); True if it ended."""
        self._thread.join(timeoutS)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Cancel the work if it still runs; the daemon thread ends at its next check."""
        if self._status.state == WorkerState.RUNNING:
            self.cancel()

    def __enter__(self) -> ThreadJob:
        return self

    def __exit__(self, *excInfo: object) -> None:
        self.close()

    # --- worker thread ---------------------------------------------------------------------------

    def _progress(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        with self._lock:
            self._events.append(WorkerEvent("progress", fraction, message))
            self._fraction, self._message = fraction, message or self._message

    def _run(self) -> None:
        try:
            outcome = (WorkerState.COMPLETED, self._function(self._progress, self.cancelToken), "")
        except MedAICancelledError:
            outcome = (WorkerState.CANCELLED, None, "")
        except Exception as error:  # noqa: BLE001 - any failure is reported to the panel, not raised in a thread
            outcome = (WorkerState.FAILED, None, f"{type(error).__name__}: {error}")
        with self._lock:
            self._outcome = outcome
