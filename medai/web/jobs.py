"""Long work off the web server's event loop: a thread job polled by an asyncio task.

A tab prepares a job on the event loop (reading nodes), runs its array-only ``compute`` in a
:class:`MedAICommonLib.threadjob.ThreadJob`, and adds the output nodes back on the event loop once
the thread has finished, so MRML and the views are only ever touched from one thread. The state
keys ``<prefix>Running``, ``<prefix>Progress`` (0-100), ``<prefix>Message`` and ``<prefix>Error``
drive the tab's progress bar, Cancel button and messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["WebJobRunner", "userMessage"]

POLL_INTERVAL_S = 0.2
_log = logging.getLogger(__name__)


def userMessage(error: BaseException) -> str:
    """The sentence shown in the page for an error: input errors as they are, others with their type."""
    from MedAICommonLib.errors import MedAICancelledError, MedAIInputError

    if isinstance(error, MedAIInputError):
        return str(error)
    if isinstance(error, MedAICancelledError):
        return "Cancelled; nothing was changed."
    return f"Failed: {type(error).__name__}: {error}"


class WebJobRunner:
    """Runs one job at a time for a tab and mirrors its progress into the trame state.

    Args:
        state: the trame server's state.
        prefix: the state key prefix of the tab (``seg``, ``reg``...).
    """

    def __init__(self, state: Any, prefix: str) -> None:
        self.state = state
        self.prefix = prefix
        self.job: Any = None
        self._onEvents: Callable[[list], None] | None = None
        state.update({self._key("Running"): False, self._key("Progress"): 0, self._key("Message"): ""})
        state[self._key("Error")] = ""

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def running(self) -> bool:
        return self.job is not None

    def say(self, message: str = "", error: str = "") -> None:
        """Show a status message and/or an error sentence in the tab."""
        self.state[self._key("Message")] = message
        self.state[self._key("Error")] = error

    def run(
        self,
        compute: Callable[[Any, Any], Any],
        finish: Callable[[Any], str | None],
        label: str,
        onEvents: Callable[[list], None] | None = None,
    ) -> bool:
        """Start ``compute(progress, cancelToken)`` in a thread; ``finish(result)`` runs on the event loop.

        Args:
            compute: the thread's work; it must not touch MRML nor the views.
            finish: adds the outputs; returns the message to show (None: it started another job).
            label: what runs, shown while it runs ("Watershed"...).
            onEvents: called on the event loop, once per poll, with the new ``(fraction, message)`` progress events.

        Returns:
            False when a job of this tab is still running (nothing started).
        """
        from trame.app import asynchronous

        from MedAICommonLib.threadjob import ThreadJob

        if self.job is not None:
            self.say(self.state[self._key("Message")], "Wait for the running job to finish, or cancel it.")
            return False
        self.job = ThreadJob(compute, name=f"MedAIWeb{label}")
        self._onEvents = onEvents
        self.state.update({self._key("Running"): True, self._key("Progress"): 0})
        self.say(f"{label}: starting")
        self.job.start()
        asynchronous.create_task(self._watch(self.job, finish, label))
        return True

    def cancel(self) -> None:
        """Ask the running job to stop; the tab says "Cancelled" once its thread has ended."""
        if self.job is not None:
            self.job.cancel()
            self.say("Cancelling...")

    async def _watch(self, job: Any, finish: Callable[[Any], str], label: str) -> None:
        import asyncio

        from MedAICommonLib.worker import WorkerState

        while True:
            status = job.poll()
            with self.state:
                events = [(e.fraction, e.message) for e in status.events if e.kind == "progress"]
                if events and self._onEvents is not None:
                    self._onEvents(events)
                self.state[self._key("Progress")] = round(100 * status.fraction, 1)
                if status.message and not status.finished:
                    self.state[self._key("Message")] = f"{label}: {status.message}"
            if status.finished:
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        with self.state:
            self.job = None
            self.state[self._key("Running")] = False
            if status.state == WorkerState.COMPLETED:
                self._finish(finish, status.result, label)
            elif status.state == WorkerState.CANCELLED:
                self.say(f"{label} cancelled; nothing was changed.")
            else:
                self.say("", f"{label} failed: {status.errorMessage}")

    def _finish(self, finish: Callable[[Any], str | None], result: Any, label: str) -> None:
        try:
            message = finish(result)
        except Exception as error:  # noqa: BLE001 - the page must say what went wrong, the server keeps running
            _log.exception("%s could not add its results", label)
            self.say("", userMessage(error))
            return
        # None: ``finish`` started the next step of a chain, which reports for itself.
        if message is not None:
            self.state[self._key("Progress")] = 100
            self.say(message)
