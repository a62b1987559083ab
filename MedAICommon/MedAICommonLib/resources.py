"""Where MedAI's shared ``Resources/`` folder lies.

In a checkout (and an editable install) it is the top-level ``Resources/`` beside the modules.
In a Slicer extension build the top-level CMakeLists.txt installs it as ``MedAIResources/``
beside the scripted modules. ``MEDAI_RESOURCES`` overrides both (used by tests).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resourcesDir", "repositoryRoot"]

_here = Path(__file__).resolve().parent


def repositoryRoot() -> Path | None:
    """The checkout's root folder, or None when running from an installed extension."""
    root = _here.parents[1]
    return root if (root / "MedAICommon").is_dir() and (root / "Resources").is_dir() else None


def resourcesDir() -> Path:
    """The folder that holds ``Models/`` and ``SampleData/``.

    Raises:
        FileNotFoundError: when no such folder can be found (a broken installation).
    """
    candidates = []
    if os.environ.get("MEDAI_RESOURCES"):
        candidates.append(Path(os.environ["MEDAI_RESOURCES"]))
    root = repositoryRoot()
    if root is not None:
        candidates.append(root / "Resources")
    candidates.append(_here.parent / "MedAIResources")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"MedAI resources folder not found; looked in {', '.join(map(str, candidates))}")
