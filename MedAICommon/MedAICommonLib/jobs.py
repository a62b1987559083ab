"""Long work: progress callbacks, cancel tokens and the background worker process.

Every long Lib call takes ``progress(fraction, message)`` (fraction 0-1) and a :class:`CancelToken`.
Inside Slicer the module adapter runs AI work in a separate Python process (``PythonSlicer``)
through :class:`WorkerProcess`, polled by a ``QTimer`` so that the GUI stays live.

Worker protocol (one line each on the child's stdout, UTF-8):

- ``MEDAI_PROGRESS <fraction> <message>``: fraction is a float in [0, 1]; the message is the rest
  of the line and may be empty.
- ``MEDAI_RESULT <json>``: the result, one line of JSON; the last one printed wins.

Any other stdout line is passed on as an ``"output"`` event. stderr is kept; when the child fails,
its last non-empty stderr line (a traceback's exception line) becomes the error message. The child
side writes the protocol with :func:`reportProgress`, :func:`reportResult` or :func:`progressToStdout`.

Example (a script, or a test)::

    with WorkerProcess(["-m", "mypackage.worker", "input.nrrd"]) as worker:
        result = worker.runBlocking(progress=print)
"""

from __future__ import annotations

import collections
import enum
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError

__all__ = [
    "ProgressCallback",
    "CancelToken",
    "subProgress",
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

PROGRESS_PREFIX = "MEDAI_PROGRESS"
RESULT_PREFIX = "MEDAI_RESULT"
TEMP_DIR_ENV = "MEDAI_WORKER_TEMP_DIR"
# Seconds to wait for the last stdout lines after the child exited (pipes held by a stray helper).
_EOF_GRACE_S = 2.0
_STDERR_LINES_KEPT = 200


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


def reportProgress(fraction: float, message: str = "", stream: TextIO | None = None) -> None:
    """Child side: print one ``MEDAI_PROGRESS`` line (flushed at once) for the parent to read."""
    oneLine = " ".join(str(message).split())
    print(
        f"{PROGRESS_PREFIX} {min(max(float(fraction), 0.0), 1.0):.4f} {oneLine}".rstrip(),
        file=stream or sys.stdout,
        flush=True,
    )


def reportResult(result: Any, stream: TextIO | None = None) -> None:
    """Child side: print the ``MEDAI_RESULT`` line; ``result`` must be JSON-serialisable."""
    print(f"{RESULT_PREFIX} {json.dumps(result)}", file=stream or sys.stdout, flush=True)


def progressToStdout(fraction: float, message: str = "") -> None:
    """A :data:`ProgressCallback` for code running inside a worker: forwards to :func:`reportProgress`."""
    reportProgress(fraction, message)


class WorkerState(str, enum.Enum):
    """Where a :class:`WorkerProcess` is; the last three are final."""

    NOT_STARTED = "notStarted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class WorkerEvent:
    """One thing the child said: ``kind`` is ``"progress"``, ``"result"``, ``"output"`` or ``"stderr"``."""

    kind: str
    fraction: float | None = None
    message: str = ""
    result: Any = None


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


def parseProtocolLine(line: str) -> WorkerEvent:
    """Turn one stdout line of the child into an event (malformed protocol lines become output)."""
    text = line.rstrip("\r\n")
    head, _, rest = text.partition(" ")
    try:
        if head == PROGRESS_PREFIX:
            fractionText, _, message = rest.partition(" ")
            return WorkerEvent("progress", fraction=min(max(float(fractionText), 0.0), 1.0), message=message)
        if head == RESULT_PREFIX:
            return WorkerEvent("result", result=json.loads(rest))
    except ValueError:
        pass
    return WorkerEvent("output", message=text)


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
        options: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self._process = self._popen(env, options)
        except OSError as error:
            raise WorkerError(f"Cannot start the worker with {self.python}: {error.strerror or error}.") from error
        self._status.state = WorkerState.RUNNING
        for stream, kind in ((self._process.stdout, "stdout"), (self._process.stderr, "stderr")):
            self._openStreams.add(kind)
            self._readers[kind] = threading.Thread(target=_readLines, args=(stream, kind, self._lines), daemon=True)
            self._readers[kind].start()

    def _popen(self, env: dict[str, str], options: dict[str, Any]) -> subprocess.Popen:
        return subprocess.Popen(
            [self.python, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            cwd=self._cwd,
            **options,
        )

    def poll(self) -> WorkerStatus:
        """Events since the last call and the current state; never blocks (call it from a timer)."""
        if self._process is None or self._status.finished:
            return self._snapshot()
        self._drainLines()
        if self._exitTime is None and self._childExited():
            self._killGroup()  # helpers the child left behind die with it
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
        self._killGroup()
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

    def _childExited(self) -> bool:
        """True once the child ended; on POSIX it is not reaped yet, so its group id stays ours to kill."""
        if hasattr(os, "waitid") and os.name == "posix":
            try:
                return os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                return True
        return self._process.poll() is not None

    def _killGroup(self) -> None:
        pid = self._process.pid
        if os.name == "posix":
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        elif self._process.poll() is None:
            # taskkill /T walks the tree from the living parent; kill() is the fallback.
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True, check=False)
            if self._process.poll() is None:
                self._process.kill()

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
