"""Installs MedAI's Python dependencies inside the Slicer desktop, at first use and after asking.

Called by :meth:`MedAICommon.MedAIPanelMixin.startOrCancel` before every job, never at import or in
``setup()``, so that Slicer starts fast and nothing is downloaded until the user runs something:

1. torch, if absent, through the PyTorch extension (``PyTorchUtils``, in ``EXTENSION_DEPENDS``), which
   asks the user itself and picks the build that fits the GPU driver;
2. the packages of ``Resources/requirements.txt`` that are absent or at another version
   (:func:`MedAICommonLib.dependencies.missingRequirements`), after a confirmation naming them and the
   download size, with ``slicer.packaging.pip_ensure`` where this Slicer has it (5.12 and newer) and
   ``slicer.util.pip_install`` otherwise. A constraints file pins Slicer's own SimpleITK, vtk, numpy,
   pydicom and Pillow at their installed versions, so pip fails rather than replacing them.

Slicer loads every ``.py`` file of a module folder as a module, so this file also holds the hidden,
empty module class :class:`MedAICommonDependencies` (as Slicer's own DICOM plugin files do);
without it Slicer would report an error for this file at every start.
"""

import importlib
import importlib.util
import logging
import os
import tempfile

import slicer
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from MedAICommonLib.dependencies import (
    downloadSizeClass,
    missingRequirements,
    pipInstallArguments,
    protectedConstraints,
    requirementsPath,
)

__all__ = ["MedAICommonDependencies", "ensureMedAIDependencies"]

# MONAI 1.6 needs torch 2.8 or newer; the PyTorch extension picks the newest build the driver runs.
TORCH_VERSION_REQUIREMENT = ">=2.8"


class MedAICommonDependencies(ScriptedLoadableModule):
    """Hidden module that only lets Slicer load this helper file without an error; it has no panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedAI Dependencies")
        self.parent.categories = ["MedAI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedAI contributors"]
        self.parent.helpText = _("Installs MedAI's Python packages at first use; used by the MedAI modules.")
        self.parent.acknowledgementText = ""
        self.parent.hidden = True


def ensureMedAIDependencies(parent=None) -> bool:
    """Make sure torch and MedAI's pinned packages are installed, asking the user before any download.

    Args:
        parent: the widget the questions are shown over; Slicer's main window when None.

    Returns:
        True when everything is installed (nothing to do, or installed now); False when the user
        declined, the PyTorch extension is absent or the installation failed (an error was shown).
        The caller then starts nothing.
    """
    if not _ensureTorch():
        return False
    missing = missingRequirements(requirementsPath())
    if not missing:
        return True
    names = ", ".join(str(r) for r in missing)
    question = _(
        "MedAI needs these Python packages, which are not installed yet: {names}.\n\n"
        "Download: {size}. Install them now with pip? This takes a few minutes; Slicer's own SimpleITK, "
        "VTK and numpy are not changed."
    ).format(names=names, size=downloadSizeClass(missing))
    if not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(question, parent=parent):
        logging.info("MedAI: installation of %s declined by the user", names)
        return False
    with tempfile.TemporaryDirectory(prefix="MedAI-") as folder:
        constraintsPath = os.path.join(folder, "constraints.txt")
        with open(constraintsPath, "w", encoding="utf-8") as constraints:
            constraints.write("\n".join(protectedConstraints()) + "\n")
        with slicer.util.tryWithErrorDisplay(_("Failed to install MedAI's Python packages."), waitCursor=True):
            _pipInstall(missing, constraintsPath)
    stillMissing = missingRequirements(requirementsPath())
    if stillMissing:
        logging.error("MedAI: still missing after installation: %s", ", ".join(str(r) for r in stillMissing))
    return not stillMissing


def _ensureTorch() -> bool:
    """torch is importable, installing it through the PyTorch extension (which asks) if needed."""
    if importlib.util.find_spec("torch") is not None:
        return True
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            _("MedAI needs the PyTorch extension: install it with the Extensions Manager and restart Slicer.")
        )
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=True, torchVersionRequirement=TORCH_VERSION_REQUIREMENT
    )
    return torch is not None


def _pipInstall(requirements: list, constraintsPath: str) -> None:
    """pip-install ``Requirement`` objects under a constraints file, by the newest means this Slicer has."""
    # Built first: it refuses Slicer's own packages and torch whichever way pip is called.
    arguments = pipInstallArguments(requirements, constraintsPath)
    packaging = _slicerPackaging()
    if packaging is not None:
        # Already confirmed above, hence no second prompt; it still offers a restart when needed.
        packaging.pip_ensure(
            [str(r) for r in requirements], constraints=constraintsPath, prompt_install=False, requester="MedAI"
        )
        return
    # Slicer 5.8: pip_install takes the arguments after "install" as a list (paths may hold spaces).
    slicer.util.pip_install(arguments[1:])


def _slicerPackaging():
    """Slicer's ``slicer.packaging`` module when it has ``pip_ensure`` (Slicer 5.12 and newer), else None."""
    try:
        module = importlib.import_module("slicer.packaging")
    except ImportError:
        return None
    return module if hasattr(module, "pip_ensure") else None
