"""Jobs: cancel tokens, staged progress and the worker process (real child Python processes)."""

from __future__ import annotations

import io
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
from MedAICommonLib.jobs import (
    CancelToken,
    WorkerError,
    WorkerProcess,
    WorkerState,
    parseProtocolLine,
    reportProgress,
    reportResult,
    subProgress,
)


def writeScript(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def pollUntilFinished(worker: WorkerProcess, timeoutS: float = 15.0):
    events = []
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline:
        status = worker.poll()
        events.extend(status.events)
        if status.finished:
            return status, events
        time.sleep(0.02)
    raise AssertionError(f"worker still {worker.poll().state} after {timeoutS} s")


def processGone(pid: int) -> bool:
    """True when no process has this pid any more, or it is a zombie (dead, waiting to be reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def waitFor(predicate, timeoutS: float = 5.0) -> bool:
    deadline = time.monotonic() + timeoutS
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- CancelToken and progress helpers ----------------------------------------------------------


def test_cancel_token_raises_only_after_cancel():
    token = CancelToken()
    token.raiseIfCancelled()
    assert not token.cancelled
    token.cancel()
    token.cancel()
    assert token.cancelled
    with pytest.raises(MedAICancelledError):
        token.raiseIfCancelled()


def test_cancel_token_seen_by_worker_threads():
    token = CancelToken()
    iterationsDone = []
    stoppedBy = []

    def work(index):
        count = 0
        try:
            while True:
                token.raiseIfCancelled()
                count += 1
                time.sleep(0.001)
        except MedAICancelledError:
            stoppedBy.append(index)
        iterationsDone.append(count)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    threading.Thread(target=token.cancel).start()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(stoppedBy) == [0, 1, 2, 3]
    assert all(count > 0 for count in iterationsDone)
    assert token.wait(0)


def test_sub_progress_maps_stages_onto_the_whole_job():
    seen = []
    progress = lambda fraction, message: seen.append((round(fraction, 6), message))  # noqa: E731
    subProgress(progress, 0.2, 0.6)(0.5, "half of stage two")
    subProgress(progress, 0.6, 1.0)(1.5, "clamped")
    subProgress(None, 0.0, 0.5)(0.3, "nobody listens")
    assert seen == [(0.4, "half of stage two"), (1.0, "clamped")]
    with pytest.raises(ValueError, match="start"):
        subProgress(progress, 0.7, 0.3)


def test_protocol_lines_round_trip():
    stream = io.StringIO()
    reportProgress(0.25, "Loading\nimage", stream=stream)
    reportResult({"dice": 0.9, "names": ["a\nb"]}, stream=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    progress, result = (parseProtocolLine(line) for line in lines)
    assert (progress.kind, progress.fraction, progress.message) == ("progress", 0.25, "Loading image")
    assert (result.kind, result.result) == ("result", {"dice": 0.9, "names": ["a\nb"]})
    assert parseProtocolLine("MEDAI_PROGRESS nan-ish oops").kind == "output"
    assert parseProtocolLine("plain log line\n").message == "plain log line"


# --- WorkerProcess -------------------------------------------------------------------------------


def test_worker_progress_is_polled_to_completion(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import sys, time
        from MedAICommonLib.jobs import progressToStdout, reportResult
        steps = int(sys.argv[1])
        for step in range(steps):
            progressToStdout(step / steps, f"step {step}")
            time.sleep(0.02)
        print("a log line")
        reportResult({"steps": steps, "pid": __import__("os").getpid()})
        """,
    )
    with WorkerProcess([str(script), "5"]) as worker:
        assert worker.poll().state == WorkerState.NOT_STARTED
        worker.start()
        status, events = pollUntilFinished(worker)
        pid = worker.pid
    assert status.state == WorkerState.COMPLETED
    assert status.fraction == 1.0
    assert status.result == {"steps": 5, "pid": pid}
    progress = [(e.fraction, e.message) for e in events if e.kind == "progress"]
    assert progress == [(step / 5, f"step {step}") for step in range(5)]
    assert [e.message for e in events if e.kind == "output"] == ["a log line"]
    assert processGone(pid)


def test_worker_run_blocking_returns_result_and_cleans_temp_dir(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import os, sys
        from pathlib import Path
        from MedAICommonLib.jobs import reportProgress, reportResult
        scratch = Path(os.environ["MEDAI_WORKER_TEMP_DIR"])
        (scratch / "partial.txt").write_text("x")
        reportProgress(0.5, "half")
        reportResult({"argTempDir": sys.argv[1], "envTempDir": str(scratch)})
        """,
    )
    seen = []
    worker = WorkerProcess([str(script), "{tempDir}"], useTempDir=True)
    try:
        result = worker.runBlocking(progress=lambda f, m: seen.append((f, m)))
        assert worker.tempDir.is_dir()
    finally:
        worker.close()
    assert result["argTempDir"] == result["envTempDir"] == str(worker.tempDir)
    assert seen == [(0.5, "half")]
    assert not worker.tempDir.exists()


def test_worker_cancel_kills_child_and_grandchild(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import subprocess, sys, time
        from MedAICommonLib.jobs import reportProgress
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        reportProgress(0.1, f"grandchild {grandchild.pid}")
        time.sleep(60)
        """,
    )
    token = CancelToken()
    worker = WorkerProcess([str(script)], useTempDir=True)
    grandchildPids = []

    def progress(fraction, message):
        grandchildPids.append(int(message.split()[1]))
        token.cancel()  # the GUI's Cancel button, pressed once work has started

    started = time.monotonic()
    try:
        with pytest.raises(MedAICancelledError):
            worker.runBlocking(progress=progress, cancelToken=token)
        assert worker.poll().state == WorkerState.CANCELLED
    finally:
        worker.close()
    assert time.monotonic() - started < 10
    assert len(grandchildPids) == 1
    assert processGone(worker.pid)
    assert waitFor(lambda: processGone(grandchildPids[0])), f"grandchild {grandchildPids[0]} survived the cancel"
    assert not worker.tempDir.exists()


def test_worker_failure_reports_last_stderr_line(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import sys
        from MedAICommonLib.jobs import reportProgress
        reportProgress(0.3, "working")
        print("some warning", file=sys.stderr)
        raise RuntimeError("the model weights do not fit the network")
        """,
    )
    with WorkerProcess([str(script)]) as worker:
        with pytest.raises(WorkerError, match="^RuntimeError: the model weights do not fit the network$") as caught:
            worker.runBlocking()
        status = worker.poll()
    assert status.state == WorkerState.FAILED
    assert caught.value.returnCode == 1
    assert "Traceback" in caught.value.stderr and "some warning" in caught.value.stderr


def test_worker_input_error_keeps_its_type_and_message(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        from MedAICommonLib.errors import MedAIInputError
        raise MedAIInputError("Image file /nowhere/ct.nrrd does not exist.")
        """,
    )
    with WorkerProcess([str(script)]) as worker, pytest.raises(MedAIInputError) as caught:
        worker.runBlocking()
    assert str(caught.value) == "Image file /nowhere/ct.nrrd does not exist."


def test_worker_without_stderr_reports_exit_status(tmp_path):
    with WorkerProcess(["-c", "import sys; sys.exit(3)"]) as worker:
        with pytest.raises(WorkerError, match="exit status 3"):
            worker.runBlocking()


def test_worker_timeout_stops_the_child(tmp_path):
    with WorkerProcess(["-c", "import time; time.sleep(60)"]) as worker:
        with pytest.raises(TimeoutError, match="longer than 0.3 s"):
            worker.runBlocking(timeoutS=0.3)
        assert processGone(worker.pid)


def test_worker_close_kills_a_running_child():
    worker = WorkerProcess(["-c", "import time; time.sleep(60)"])
    worker.start()
    assert worker.poll().state == WorkerState.RUNNING
    worker.close()
    assert processGone(worker.pid)
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()


def test_worker_refuses_a_command_string():
    with pytest.raises(MedAIInputError, match="list of arguments"):
        WorkerProcess(f"{sys.executable} -c pass")


@pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")
def test_worker_leaves_no_helper_behind_after_normal_exit(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import subprocess, sys
        from MedAICommonLib.jobs import reportResult
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reportResult(helper.pid)
        """,
    )
    with WorkerProcess([str(script)]) as worker:
        helperPid = worker.runBlocking()
    assert waitFor(lambda: processGone(helperPid))


def test_a_missing_python_executable_is_reported(tmp_path):
    with WorkerProcess(["-c", "pass"], python=str(tmp_path / "no-python"), useTempDir=True) as worker:
        with pytest.raises(WorkerError, match="Cannot start the worker with .*no-python"):
            worker.start()
    assert not worker.tempDir.exists()


@pytest.mark.skipif(os.name != "posix", reason="sessions are POSIX")
def test_a_helper_that_escaped_the_group_does_not_hang_the_poll(tmp_path):
    script = writeScript(
        tmp_path,
        "child.py",
        """
        import subprocess, sys
        from MedAICommonLib.jobs import reportResult
        # A helper in its own session keeps our stdout open; the worker cannot kill it.
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
        reportResult(helper.pid)
        """,
    )
    helperPid = None
    try:
        with WorkerProcess([str(script)]) as worker:
            worker.start()
            status, events = pollUntilFinished(worker, timeoutS=10)
            helperPid = status.result
        assert status.state == WorkerState.COMPLETED
        assert [e.result for e in events if e.kind == "result"] == [helperPid]
    finally:
        if helperPid:
            os.kill(helperPid, 9)
