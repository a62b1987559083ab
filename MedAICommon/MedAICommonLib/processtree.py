"""Child processes that die with everything they started: own process group, exit noticed, tree killed.

On POSIX the child gets its own session, so its process group id is its pid and one ``killpg``
ends it and every helper it started, even helpers that outlived it. Its exit is noticed with
``waitid(WNOWAIT)``, which does not reap it, so its group id cannot be reused by an unrelated
process before the group is killed. On Windows the child gets a new process group, and
``taskkill /T`` walks the tree from the still living child.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

__all__ = ["startProcessTree", "processExited", "killProcessTree"]


def startProcessTree(
    command: Sequence[str], env: dict[str, str], cwd: str | os.PathLike | None = None
) -> subprocess.Popen:
    """Start a command in a new process group, with text stdout and stderr pipes and no stdin.

    Args:
        command: the executable and its arguments.
        env: the child's whole environment.
        cwd: the child's working folder; None keeps this process's.

    Returns:
        The running ``subprocess.Popen``; its pipes decode UTF-8, replacing undecodable bytes.

    Raises:
        OSError: the executable cannot be started.
    """
    options: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {}
    if os.name == "nt":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    return subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        cwd=cwd,
        **options,
    )


def processExited(process: subprocess.Popen) -> bool:
    """True once the child ended; on POSIX it is not reaped yet, so its group id stays ours to kill."""
    if hasattr(os, "waitid") and os.name == "posix":
        try:
            return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return process.poll() is not None


def killProcessTree(process: subprocess.Popen) -> None:
    """Kill a child started by :func:`startProcessTree` and every process it started; does not wait."""
    if os.name == "posix":
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif process.poll() is None:
        # taskkill /T walks the tree from the living parent; kill() is the fallback.
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, check=False)
        if process.poll() is None:
            process.kill()
