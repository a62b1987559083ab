"""Long work: progress callbacks and cancel tokens, and (re-exported) the background worker process.

Every long Lib call takes ``progress(fraction, message)`` (fraction 0-1) and a :class:`CancelToken`.
Inside Slicer the module adapter runs AI work in a separate Python process (``PythonSlicer``)
through :class:`~MedAICommonLib.worker.WorkerProcess`, polled by a ``QTimer`` so that the GUI stays
live; the child reports progress and its result with the one-line protocol of
:mod:`MedAICommonLib.workerprotocol`. Both are importable from here too.

Example (a script, or a test)::

    with WorkerProcess(["-m", "mypackage.worker", "input.nrrd"]) as worker:
        result = worker.runBlocking(progress=print)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import MedAICancelledError
from .worker import WorkerError, WorkerProcess, WorkerState, WorkerStatus, defaultPythonExecutable
from .workerprotocol import (
    PROGRESS_PREFIX,
    RESULT_PREFIX,
    TEMP_DIR_ENV,
    WorkerEvent,
    parseProtocolLine,
    progressToStdout,
    reportProgress,
    reportResult,
)

__all__ = [
    "ProgressCallback",
    "CancelToken",
    "subProgress",
    # Defined in workerprotocol and worker; importable from here too.
    "PROGRESS_PREFIX",
    "RESULT_PREFIX",
    "TEMP_DIR_ENV",
    "reportProgress",
    "reportResult",
    "progressToStdout",
    "WorkerState",
    "WorkerEvent",
    "WorkerStatus",
    "WorkerError",
    "WorkerProcess",
    "parseProtocolLine",
    "defaultPythonExecutable",
]

ProgressCallback = Callable[[float, str], None]
"""``progress(fraction, message)``: fraction of the whole job done (0-1) and what happens now."""


class CancelToken:
    """A flag set by one thread (the GUI's Cancel button) and checked by the one doing the work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop at its next check; safe to call from any thread, any number of times."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def raiseIfCancelled(self, message: str = "Cancelled by the user.") -> None:
        """Stop here if the user cancelled; call it between stages, patches or iterations.

        Raises:
            MedAICancelledError: when :meth:`cancel` was called.
        """
        if self._event.is_set():
            raise MedAICancelledError(message)

    def wait(self, timeoutS: float | None = None) -> bool:
        """Block up to ``timeoutS`` seconds until cancelled; returns :attr:`cancelled`."""
        return self._event.wait(timeoutS)


def subProgress(progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback:
    """A callback that maps a stage's own 0-1 progress onto ``[start, end]`` of the whole job.

    Example: ``load = subProgress(progress, 0.0, 0.2)``; ``load(0.5, "Reading")`` reports 0.1.
    ``progress`` may be None (then the returned callback does nothing).
    """
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"subProgress needs 0 <= start <= end <= 1, got start={start}, end={end}")

    def stageProgress(fraction: float, message: str = "") -> None:
        if progress is not None:
            progress(start + (end - start) * min(max(float(fraction), 0.0), 1.0), message)

    return stageProgress
