"""The background worker: a Python child process whose stdout carries progress, polled without blocking.

Inside Slicer the module adapter starts AI work in a :class:`WorkerProcess` and polls it from a
``QTimer`` so that the GUI stays live; scripts and tests call :meth:`WorkerProcess.runBlocking`.
The child speaks the protocol of :mod:`MedAICommonLib.workerprotocol`. stderr is kept; when the
child fails, its last non-empty stderr line (a traceback's exception line) becomes the error message.

Example::

    with WorkerProcess(["-m", "mypackage.worker", "input.nrrd"]) as worker:
        result = worker.runBlocking(progress=print)
"""

from __future__ import annotations

import collections
import enum
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import MedAICancelledError, MedAIInputError
from .processtree import killProcessTree, processExited, startProcessTree
from .workerprotocol import TEMP_DIR_ENV, WorkerEvent, parseProtocolLine

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import CancelToken, ProgressCallback

__all__ = ["WorkerState", "WorkerStatus", "WorkerError", "WorkerProcess", "defaultPythonExecutable"]

# Seconds to wait for the last stdout lines after the child exited (pipes held by a stray helper).
_EOF_GRACE_S = 2.0
_STDERR_LINES_KEPT = 200


class WorkerState(str, enum.Enum):
    """Where a :class:`WorkerProcess` is; the last three are final."""

    NOT_STARTED = "notStarted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class WorkerStatus:
    """What :meth:`WorkerProcess.poll` returns: the events since the last poll and the current state."""

    state: WorkerState
    events: list[WorkerEvent] = field(default_factory=list)
    fraction: float = 0.0
    message: str = ""
    result: Any = None
    errorMessage: str = ""

    @property
    def finished(self) -> bool:
        return self.state in (WorkerState.COMPLETED, WorkerState.FAILED, WorkerState.CANCELLED)


class WorkerError(RuntimeError):
    """The worker process failed; the message is its last stderr line, ``stderr`` holds the tail."""

    def __init__(self, message: str, returnCode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returnCode = returnCode
        self.stderr = stderr


def defaultPythonExecutable() -> str:
    """``PythonSlicer`` inside the Slicer desktop (whose own executable is not a Python), else ``sys.executable``."""
    if Path(sys.executable).stem.lower().startswith("slicerapp"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def _readLines(stream: TextIO, kind: str, lines: queue.Queue) -> None:
    """Reader thread: the only place that blocks on the child's pipes."""
    try:
        for line in stream:
            lines.put((kind, line))
    except (OSError, ValueError):
        pass  # pipe closed under us while cancelling
    finally:
        lines.put((kind, None))


class WorkerProcess:
    """A Python child process whose stdout carries progress, polled without blocking.

    Args:
        args: arguments after the Python executable, e.g. ``["-m", "pkg.worker", "in.nrrd"]`` or a
            script path; the text ``{tempDir}`` in an argument is replaced by :attr:`tempDir`.
        python: the Python executable; default :func:`defaultPythonExecutable`.
        env: extra environment variables for the child (added to this process's environment).
        cwd: the child's working folder.
        useTempDir: create a scratch folder (:attr:`tempDir`, also in the child's ``MEDAI_WORKER_TEMP_DIR``)
            that :meth:`close` removes.

    The child runs in its own process group (its own session on POSIX) so that :meth:`cancel`
    kills it together with every process it started; when the child ends normally, helpers it left
    running are killed too. Call :meth:`poll`, :meth:`cancel` and :meth:`close` from one thread
    (the GUI's); only a :class:`CancelToken` may be set from others. Use it as a context manager, or call
    :meth:`close` in a ``finally``, so the process and the scratch folder never outlive the job.
    """

    def __init__(
        self,
        args: Sequence[str],
        python: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        useTempDir: bool = False,
    ) -> None:
        if isinstance(args, str):
            raise MedAIInputError("WorkerProcess args must be a list of arguments, not one string.")
        self.tempDir = Path(tempfile.mkdtemp(prefix="medai-worker-")) if useTempDir else None
        self.args = [str(a).replace("{tempDir}", str(self.tempDir)) if self.tempDir else str(a) for a in args]
        self.python = python or defaultPythonExecutable()
        self._env = dict(env or {})
        self._cwd = cwd
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._readers: dict[str, threading.Thread] = {}
        self._openStreams: set[str] = set()
        self._exitTime: float | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        self._status = WorkerStatus(WorkerState.NOT_STARTED)

    # --- parent side ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returnCode(self) -> int | None:
        return self._process.returncode if self._process else None

    @property
    def stderrText(self) -> str:
        """The last lines the child wrote to stderr."""
        return "".join(self._stderr)

    def start(self) -> None:
        """Start the child; returns at once."""
        if self._process is not None:
            raise RuntimeError("This WorkerProcess was already started; create a new one.")
        env = {**os.environ, **self._env, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        if self.tempDir:
            env[TEMP_DIR_ENV] = str(self.tempDir)
        try:
            self._process = startProcessTree([self.python, *self.args], env, self._cwd)
        except OSError as error:
            raise WorkerError(f"Cannot start the worker with {self.python}: {error.strerror or error}.") from error
        self._status.state = WorkerState.RUNNING
        for stream, kind in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr")):
            self._openStreams.add(kind)
            self._readers[kind] = threading.Thread(target=_readLines, args=(stream, kind, self._lines), daemon=True)
            self._readers[kind].start()

    def poll(self) -> WorkerStatus:
        """Events since the last call and the current state; never blocks (call it from a timer)."""
        if self._process is None or self._status.finished:
            return self._snapshot()
        self._drainLines()
        if self._exitTime is None and processExited(self._process):
            killProcessTree(self._process)  # helpers the child left behind die with it
            self._process.wait()
            self._exitTime = time.monotonic()
        if self._exitTime is not None and (not self._openStreams or time.monotonic() - self._exitTime > _EOF_GRACE_S):
            self._drainLines()
            self._finish()
        return self._snapshot()

    def cancel(self) -> None:
        """Kill the child and every process it started; the state becomes ``cancelled``."""
        if self._process is None or self._status.finished:
            return
        killProcessTree(self._process)
        self._process.wait()
        for reader in self._readers.values():
            reader.join(timeout=0.5)
        self._drainLines()
        self._status.state = WorkerState.CANCELLED
        self._status.message = "Cancelled"
        self._closePipes()

    def runBlocking(
        self,
        progress: ProgressCallback | None = None,
        cancelToken: CancelToken | None = None,
        timeoutS: float | None = None,
        pollIntervalS: float = 0.05,
    ) -> Any:
        """Start (if needed), wait for the end, and return the child's ``MEDAI_RESULT`` (None if it gave none).

        Raises:
            MedAICancelledError: ``cancelToken`` was cancelled (the process tree is killed).
            MedAIInputError: the child failed on a :class:`MedAIInputError` (its message is kept).
            WorkerError: the child failed otherwise; the message is its last stderr line.
            TimeoutError: ``timeoutS`` seconds passed (the process tree is killed).
        """
        if self._process is None:
            self.start()
        deadline = None if timeoutS is None else time.monotonic() + timeoutS
        while True:
            status = self.poll()
            for event in status.events:
                if event.kind == "progress" and progress is not None:
                    progress(event.fraction, event.message)
            if status.finished:
                break
            if cancelToken is not None and cancelToken.cancelled:
                self.cancel()
            elif deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise TimeoutError(f"Worker {self.args[:2]} took longer than {timeoutS} s and was stopped.")
            elif cancelToken is not None:
                cancelToken.wait(pollIntervalS)
            else:
                time.sleep(pollIntervalS)
        if status.state == WorkerState.CANCELLED:
            raise MedAICancelledError("Cancelled by the user.")
        if status.state == WorkerState.FAILED:
            inputErrorPrefix = "MedAIInputError: "
            if inputErrorPrefix in status.errorMessage:
                raise MedAIInputError(status.errorMessage.split(inputErrorPrefix, 1)[1])
            raise WorkerError(status.errorMessage, self.returnCode, self.stderrText)
        return status.result

    def close(self) -> None:
        """Kill the child if it still runs and remove :attr:`tempDir`; safe to call more than once."""
        try:
            if self._process is not None and self._process.returncode is None:
                self.cancel()
            else:
                self._closePipes()
        finally:
            if self.tempDir is not None:
                shutil.rmtree(self.tempDir, ignore_errors=True)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *excInfo: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------

    def _snapshot(self) -> WorkerStatus:
        status = self._status
        snapshot = WorkerStatus(
            status.state, status.events, status.fraction, status.message, status.result, status.errorMessage
        )
        status.events = []
        return snapshot

    def _drainLines(self) -> None:
        status = self._status
        while True:
            try:
                kind, line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._openStreams.discard(kind)
            elif kind == "stderr":
                self._stderr.append(line)
                status.events.append(WorkerEvent("stderr", message=line.rstrip("\r\n")))
            else:
                event = parseProtocolLine(line)
                status.events.append(event)
                if event.kind == "progress":
                    status.fraction, status.message = event.fraction, event.message
                elif event.kind == "result":
                    status.result = event.result

    def _finish(self) -> None:
        status = self._status
        code = self._process.returncode
        if code == 0:
            status.state, status.fraction, status.message = WorkerState.COMPLETED, 1.0, status.message or "Done"
        else:
            status.state = WorkerState.FAILED
            lastLines = [line.strip() for line in self._stderr if line.strip()]
            status.errorMessage = lastLines[-1] if lastLines else f"The worker process ended with exit status {code}."
        self._closePipes()

    def _closePipes(self) -> None:
        # A pipe still held open by an escaped helper is left to its daemon reader thread: closing a
        # file another thread is blocked reading from would block here too.
        if self._process is None:
            return
        for kind, stream in (("stdout", self._process.stdout), ("stderr", self._process.stderr)):
            if kind not in self._openStreams and not stream.closed:
                stream.close()
