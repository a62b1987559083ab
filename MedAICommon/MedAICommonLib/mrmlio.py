"""MRML scene files: ``.mrml`` with a ``<name>_Data/`` folder, and ``.mrb`` bundles.

Package-internal: :func:`MedAICommonLib.sceneio.loadScene` and :func:`~MedAICommonLib.sceneio.saveScene`
use these helpers. An import that fails removes every node it added, so the scene is left as it was.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from .errors import MedAIInputError
from .nodeio import _baseName, _firstError, _quietVtk

__all__: list[str] = []


def _writeMrmlWithDataFolder(scene, target: Path) -> bool:
    """Save ``<name>.mrml`` and its data in ``<name>_Data/`` beside it (Slicer's bundle layout,
    with the data folder named after the scene so that scenes saved in one folder never share it)."""
    import html
    import re

    stem = _baseName(target)
    bundle = target.parent / f"{stem}.bundle"
    bundle.mkdir()
    if not scene.SaveSceneToSlicerDataBundleDirectory(str(bundle)):
        return False
    dataFolder = f"{stem}_Data"
    if (bundle / "Data").is_dir():
        (bundle / "Data").rename(target.parent / dataFolder)
    mrmlText = next(bundle.glob("*.mrml")).read_text(encoding="utf-8")
    mrmlText = re.sub(r'((?:fileName|fileListMember\d+)=")Data/', rf"\g<1>{html.escape(dataFolder)}/", mrmlText)
    target.write_text(mrmlText, encoding="utf-8")
    shutil.rmtree(bundle)
    return True


def _importMrml(scene, mrmlPath: Path, userPath: Path) -> None:
    """Import a .mrml into the scene; on any failure remove what was added and raise."""
    import xml.etree.ElementTree as ElementTree

    from vtkmodules.vtkCommonCore import vtkCommand

    try:
        rootTag = ElementTree.parse(mrmlPath).getroot().tag
    except (ElementTree.ParseError, OSError) as error:
        raise MedAIInputError(f"The scene file {userPath} is not a valid MRML (XML) file: {error}.") from None
    if rootTag != "MRML":
        raise MedAIInputError(f"The scene file {userPath} is XML but not a MRML scene (root '{rootTag}').")
    nodesBefore = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    scene.SetURL(str(mrmlPath))
    with _quietVtk() as messages:
        imported = scene.Import()
    unread = []
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.GetID() in nodesBefore or not node.IsA("vtkMRMLStorageNode") or not node.GetFileName():
            continue
        # A storage node that failed keeps its errors; its read state does not tell.
        if node.GetUserMessages().GetNumberOfMessagesOfType(vtkCommand.ErrorEvent):
            unread.append(Path(node.GetFileName()).name)
    if imported and not unread:
        return
    added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
    for node in reversed(added):
        if node.GetID() not in nodesBefore:
            scene.RemoveNode(node)
    reason = f"data file(s) {', '.join(unread)} could not be read" if unread else _firstError(messages)
    raise MedAIInputError(f"The scene {userPath} could not be loaded: {reason}")


def _importMrb(scene, bundlePath: Path) -> None:
    """Import a .mrb bundle into the scene through a temporary unpacked copy; all or nothing."""
    if not zipfile.is_zipfile(bundlePath):
        raise MedAIInputError(f"The scene bundle {bundlePath} is not a .mrb (zip) file.")
    with tempfile.TemporaryDirectory(prefix="medai-mrb-") as folder:
        try:
            with zipfile.ZipFile(bundlePath) as bundle:
                bundle.extractall(folder)
        except (zipfile.BadZipFile, OSError) as error:
            raise MedAIInputError(f"The scene bundle {bundlePath} cannot be unpacked: {error}.") from None
        sceneFiles = sorted(Path(folder).rglob("*.mrml"), key=lambda p: len(p.parts))
        if not sceneFiles:
            raise MedAIInputError(f"The scene bundle {bundlePath} holds no .mrml file.")
        _importMrml(scene, sceneFiles[0], bundlePath)
    # The data now live in memory; forget the unpacked copy so that a save never targets it.
    scene.SetURL("")
    scene.SetRootDirectory(str(bundlePath.parent))
