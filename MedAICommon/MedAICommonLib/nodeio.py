"""Reading and writing one MRML node with Slicer's storage nodes: the machinery shared by the loaders.

Package-internal: :mod:`MedAICommonLib.sceneio` and the per-kind readers and writers
(:mod:`~MedAICommonLib.volumeio`, :mod:`~MedAICommonLib.segmentationio`,
:mod:`~MedAICommonLib.transformio`, :mod:`~MedAICommonLib.markupsio`, :mod:`~MedAICommonLib.tableio`)
use these helpers; users call the ``load...``/``save...`` functions of those modules.

- Which file names mean which kind of data (``.seg.nrrd``, ``.mrk.json``, ITK ``.h5``...).
- Reading: a file is read into a node that is not in any scene, and the node (with its storage
  and display nodes) is added only when reading succeeded, all or nothing.
- Writing: into a temporary folder beside the target, then renamed into place, so a failed save
  leaves the disk as it was.
- VTK's messages are collected instead of printed, and the first useful one becomes the reason
  in the :class:`~MedAICommonLib.errors.MedAIInputError` raised.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import slicer

from .errors import MedAIInputError

__all__: list[str] = []

_SEGMENTATION_EXTENSIONS = (".seg.nrrd", ".seg.nhdr", ".seg.vtm")
_MARKUPS_EXTENSIONS = (".mrk.json", ".json", ".fcsv")
_TABLE_EXTENSIONS = (".tsv", ".csv")
_TRANSFORM_EXTENSIONS = (".h5", ".hdf5", ".tfm", ".mat", ".txt")
_IMAGE_EXTENSIONS = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".hdr",
    ".dcm",
    ".tif",
    ".tiff",
    ".png",
    ".jpg",
)
_SCENE_EXTENSIONS = (".mrml", ".mrb")
# What slicer-core's volume reader reads; SimpleITK reads the other images.
_SLICER_VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr")
# What Slicer's volume writer writes (volumes, label maps, displacement fields).
_VOLUME_WRITE_EXTENSIONS = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
_KNOWN_EXTENSIONS = _SEGMENTATION_EXTENSIONS + _MARKUPS_EXTENSIONS + _IMAGE_EXTENSIONS + _TABLE_EXTENSIONS
_KNOWN_EXTENSIONS += _TRANSFORM_EXTENSIONS + _SCENE_EXTENSIONS


def _extension(path) -> str:
    """The lower-case extension, including double ones such as ``.nii.gz`` and ``.seg.nrrd``."""
    name = Path(path).name.lower()
    for extension in sorted(_KNOWN_EXTENSIONS, key=len, reverse=True):
        if name.endswith(extension):
            return extension
    return Path(name).suffix


def _baseName(path) -> str:
    """The file name without its (possibly double) extension."""
    name = Path(path).name
    extension = _extension(path)
    return name[: len(name) - len(extension)] if extension and len(name) > len(extension) else name


def _checkExtension(filePath: Path, allowed: tuple[str, ...], what: str) -> str:
    """The file's extension, when it is one of ``allowed``; else a MedAIInputError naming it."""
    extension = _extension(filePath)
    if extension not in allowed:
        raise MedAIInputError(f"The {what} file {filePath} has an unsupported extension '{extension}'.")
    return extension


def _outputPath(path) -> Path:
    """The absolute path of a file to write, whose folder must exist; refused before anything is written."""
    if path is None or str(path).strip() == "":
        raise MedAIInputError("No output file was given.")
    filePath = Path(path).expanduser().absolute()
    if not filePath.parent.is_dir():
        raise MedAIInputError(f"The output folder {filePath.parent} does not exist.")
    if filePath.is_dir():
        raise MedAIInputError(f"The output path {filePath} is a folder, but a file name is needed.")
    return filePath


def _textLines(filePath: Path, what: str) -> list[str]:
    """The non-empty lines of a text file; binary content is refused as unreadable."""
    try:
        text = filePath.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read: it is not a UTF-8 text file.") from None
    if "\x00" in text:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read: it holds binary data, not text.")
    return [line.strip() for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def _quietVtk():
    """Collect VTK and MRML messages instead of printing them; yields the collecting window.

    VTK's output window and logger are process-wide: call this from one thread at a time.
    """
    from vtkmodules.vtkCommonCore import vtkLogger, vtkOutputWindow, vtkStringOutputWindow

    window = vtkStringOutputWindow()
    previousWindow = vtkOutputWindow.GetInstance()
    previousVerbosity = vtkLogger.GetCurrentVerbosityCutoff()
    vtkOutputWindow.SetInstance(window)
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    try:
        yield window
    finally:
        vtkOutputWindow.SetInstance(previousWindow)
        vtkLogger.SetStderrVerbosity(previousVerbosity)


def _firstError(messages, storageNode=None) -> str:
    """The first useful line of what VTK or a storage node reported, for an error message."""
    texts = []
    if storageNode is not None and storageNode.GetUserMessages().GetNumberOfMessages():
        texts.append(storageNode.GetUserMessages().GetAllMessagesAsString())
    texts.append(messages.GetOutput() if messages is not None else "")
    for text in texts:
        for line in text.splitlines():
            line = line.strip().lstrip("- ").strip()
            if line and not line.startswith(("ERROR: In", "Warning: In", "Info: In")):
                return line.removeprefix("Error: ").rstrip(".") + "."
    return "no reason was given."


def _readInto(storageNode, node, filePath: Path, what: str) -> None:
    """Read a file into a node that is not in any scene; raise with the reader's reason on failure."""
    storageNode.SetFileName(str(filePath))
    with _quietVtk() as messages:
        succeeded = storageNode.ReadData(node)
    if not succeeded:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read: {_firstError(messages, storageNode)}")


def _addToScene(scene, node, storageNode, name: str):
    """Add a node read outside the scene, with its storage and display nodes; all or nothing."""
    if scene is None:
        raise MedAIInputError("No scene was given to load into.")
    node.SetName(scene.GenerateUniqueName(name))
    added = []
    try:
        with _quietVtk():
            if storageNode is not None:
                added.append(scene.AddNode(storageNode))
            added.append(scene.AddNode(node))
            if storageNode is not None:
                node.SetAndObserveStorageNodeID(storageNode.GetID())
            if node.IsA("vtkMRMLDisplayableNode"):
                node.CreateDefaultDisplayNodes()
    except Exception:
        for addedNode in reversed(added):
            scene.RemoveNode(addedNode)
        raise
    return node


def _storageNodeForSaving(node, extension: str):
    """A fresh storage node able to write this node in this format (the node's own is left alone)."""
    if node.IsA("vtkMRMLVolumeNode"):
        if extension not in _VOLUME_WRITE_EXTENSIONS:
            raise MedAIInputError(f"A volume cannot be saved as '{extension}'; use .nrrd, .nii.gz or .mha.")
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    elif node.IsA("vtkMRMLSegmentationNode"):
        storageNode = slicer.vtkMRMLSegmentationStorageNode()
    elif node.IsA("vtkMRMLTransformNode"):
        if extension in _IMAGE_EXTENSIONS and not node.IsA("vtkMRMLGridTransformNode"):
            raise MedAIInputError(
                f"Only a grid (displacement field) transform can be saved as an image ('{extension}')."
            )
        if extension not in _TRANSFORM_EXTENSIONS + _VOLUME_WRITE_EXTENSIONS:
            raise MedAIInputError(f"A transform cannot be saved as '{extension}'; use .h5 or .tfm.")
        storageNode = slicer.vtkMRMLTransformStorageNode()
    elif node.IsA("vtkMRMLMarkupsNode"):
        if extension == ".fcsv" and node.IsA("vtkMRMLMarkupsFiducialNode"):
            storageNode = slicer.vtkMRMLMarkupsFiducialStorageNode()
        elif extension in (".mrk.json", ".json"):
            storageNode = slicer.vtkMRMLMarkupsJsonStorageNode()
        else:
            raise MedAIInputError(f"Markups cannot be saved as '{extension}'; use .mrk.json, .fcsv or .csv.")
    elif node.IsA("vtkMRMLTableNode"):
        if extension not in _TABLE_EXTENSIONS + (".txt",):
            raise MedAIInputError(f"A table cannot be saved as '{extension}'; use .tsv or .csv.")
        storageNode = slicer.vtkMRMLTableStorageNode()
    else:
        raise MedAIInputError(f"Saving a {node.GetClassName()} ('{node.GetName()}') is not supported.")
    storageNode.SetUseCompression(1)
    return storageNode


def _writeWith(storageNode, node, target: Path) -> None:
    """Write a node with a storage node; raise with the writer's reason when no file appeared."""
    storageNode.SetFileName(str(target))
    with _quietVtk() as messages:
        written = storageNode.WriteData(node)
    if not written or not target.exists():
        raise MedAIInputError(
            f"'{node.GetName()}' could not be saved as {target.name}: {_firstError(messages, storageNode)}"
        )


def _atomicWrite(filePath: Path, write) -> None:
    """Write into a temporary folder beside the target, then move everything written into place.

    Companion files (a ``.raw.gz`` beside a ``.nhdr``, a ``.schema.tsv`` beside a table, the
    ``<name>_Data/`` folder beside a ``.mrml``) are moved first and the main file last.
    """
    folder = Path(tempfile.mkdtemp(prefix=f".{filePath.name}.", suffix=".partial", dir=filePath.parent))
    try:
        target = folder / filePath.name
        write(target)
        if not target.is_file():
            raise MedAIInputError(f"Nothing was written to {filePath}.")
        for item in sorted(folder.iterdir(), key=lambda p: p == target):
            _moveInto(item, filePath.parent / item.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _moveInto(source: Path, destination: Path) -> None:
    if source.is_dir():
        destination.mkdir(exist_ok=True)
        for child in source.iterdir():
            _moveInto(child, destination / child.name)
    else:
        os.replace(source, destination)
