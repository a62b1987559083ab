"""Errors that MedAI reports to users.

Every check of user input raises :class:`MedAIInputError` with one sentence that names the
problem (the file, the node, the argument), before anything is created in the scene or on disk.
The command line turns it into ``error: <message>`` and exit status 2.
"""

from __future__ import annotations

__all__ = ["MedAIInputError", "MedAICancelledError"]


class MedAIInputError(ValueError):
    """Bad input given by the user: a missing file, a wrong image, mismatched geometry..."""


class MedAICancelledError(RuntimeError):
    """The user cancelled a long run; the scene and the disk are left as they were."""
