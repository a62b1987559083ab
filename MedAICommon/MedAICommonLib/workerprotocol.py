"""The worker protocol: how a child process tells its parent about progress and its result.

One line each on the child's stdout, UTF-8:

- ``MEDAI_PROGRESS <fraction> <message>``: fraction is a float in [0, 1]; the message is the rest
  of the line and may be empty.
- ``MEDAI_RESULT <json>``: the result, one line of JSON; the last one printed wins.

Any other stdout line is passed on as an ``"output"`` event. The child writes the protocol with
:func:`reportProgress`, :func:`reportResult` or :func:`progressToStdout`; the parent
(:class:`~MedAICommonLib.worker.WorkerProcess`) reads it with :func:`parseProtocolLine`. A child
started with a scratch folder finds it in the environment variable :data:`TEMP_DIR_ENV`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "PROGRESS_PREFIX",
    "RESULT_PREFIX",
    "TEMP_DIR_ENV",
    "reportProgress",
    "reportResult",
    "progressToStdout",
    "WorkerEvent",
    "parseProtocolLine",
]

PROGRESS_PREFIX = "MEDAI_PROGRESS"
RESULT_PREFIX = "MEDAI_RESULT"
TEMP_DIR_ENV = "MEDAI_WORKER_TEMP_DIR"


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
    """A :data:`~MedAICommonLib.jobs.ProgressCallback` for code running inside a worker: forwards to :func:`reportProgress`."""
    reportProgress(fraction, message)


@dataclass
class WorkerEvent:
    """One thing the child said: ``kind`` is ``"progress"``, ``"result"``, ``"output"`` or ``"stderr"``."""

    kind: str
    fraction: float | None = None
    message: str = ""
    result: Any = None


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
