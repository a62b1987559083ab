"""Scene I/O without the Slicer desktop: load and save nodes and whole scenes on slicer-core.

Every loader checks the file first, reads it into a node that is not yet in the scene, and adds
the node (with its storage and display nodes) only when reading succeeded, so a failure raises
:class:`~MedAICommonLib.errors.MedAIInputError` and leaves the scene as it was. Every save writes
into a temporary folder beside the target and renames the result into place, so a failed save
leaves the disk as it was. Files are read and written by Slicer's own storage nodes, so what is
written here opens in Slicer and the other way round.

Coordinates: nodes hold RAS millimetres; image files, ITK transform files and markups files hold
LPS, and the storage nodes convert. Transform files hold the ITK *resampling* transform (from
parent); the node holds the *modeling* transform to parent.

Example:
    >>> scene = createScene()
    >>> volumeNode = loadVolume(scene, "head.nii.gz")  # doctest: +SKIP
    >>> saveScene(scene, "case.mrb")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import slicer

from .errors import MedAIInputError
from .validation import checkInputFile, checkReadableImage, checkVolumeNode

__all__ = [
    "createScene",
    "loadVolume",
    "loadSegmentation",
    "loadTransform",
    "loadMarkups",
    "loadTable",
    "loadNode",
    "loadScene",
    "saveNode",
    "saveScene",
]

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
_SLICER_VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr")
_KNOWN_EXTENSIONS = _SEGMENTATION_EXTENSIONS + _MARKUPS_EXTENSIONS + _IMAGE_EXTENSIONS + _TABLE_EXTENSIONS
_KNOWN_EXTENSIONS += _TRANSFORM_EXTENSIONS + _SCENE_EXTENSIONS


def createScene():
    """A scene set up like Slicer's own, without Qt: default colour tables and module logics.

    The application logic, colour logic (with the default colour tables that label maps and
    segmentations refer to), and the volumes, segmentations, markups, tables, transforms and
    subject hierarchy logics are attached to the scene and stay alive with it.

    Returns:
        A ``vtkMRMLScene`` ready for loading and saving.
    """
    from vtkmodules.vtkCommonCore import vtkCollection

    scene = slicer.vtkMRMLScene()
    applicationLogic = slicer.vtkSlicerApplicationLogic()
    applicationLogic.SetMRMLScene(scene)
    colorLogic = applicationLogic.GetColorLogic()
    colorLogic.SetMRMLScene(scene)
    with _quietVtk():
        colorLogic.AddDefaultColorNodes()
    applicationLogic.SetSliceLogics(vtkCollection())
    applicationLogic.SetViewLogics(vtkCollection())
    logics = [applicationLogic]
    for logicName, logicClass in (
        ("Volumes", slicer.vtkSlicerVolumesLogic),
        ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ("Markups", slicer.vtkSlicerMarkupsLogic),
        ("Tables", slicer.vtkSlicerTablesLogic),
        ("Transforms", slicer.vtkSlicerTransformLogic),
        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
    ):
        logic = logicClass()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(applicationLogic)
        applicationLogic.SetModuleLogic(logicName, logic)
        logics.append(logic)
    # The application logic keeps plain pointers to module logics: the scene's Python wrapper
    # holds the references so that they live as long as the scene.
    scene.medaiLogics = logics
    return scene


def loadVolume(scene, path, name: str | None = None, labelmap: bool = False, allowNaN: bool = True):
    """Load a scalar volume or label map volume from an image file or a DICOM series folder.

    Args:
        scene: the ``vtkMRMLScene`` to add the volume to.
        path: an image file (NRRD, NIfTI ``.nii``/``.nii.gz``, MHA/MHD, a single DICOM file, TIFF...)
            or a folder holding a DICOM series (read with SimpleITK's ImageSeriesReader; when
            the folder holds several series the one with the most slices is read).
        name: the node name; defaults to the file name without its extension.
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` instead of a ``vtkMRMLScalarVolumeNode``.
        allowNaN: when False, refuse images with NaN or infinite voxels before adding anything.

    Returns:
        The new volume node, with IJK-to-RAS taken from the file (LPS in the file, RAS in the node).
        The voxels keep the file's order, even where its IJK axes are left-handed (Slicer's
        desktop would flip the K axis), so what is saved back lies on exactly the same grid.

    Raises:
        MedAIInputError: missing or unreadable file, an image with more than 3 dimensions or more
            than one value per voxel, or non-finite voxels when ``allowNaN`` is False.
    """
    filePath = checkInputFile(path, "image", allowDirectory=True)
    volumeNode = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    storageNode = None
    if filePath.is_dir():
        _readWithSimpleITK(volumeNode, filePath)
    elif _extension(filePath) not in _SLICER_VOLUME_EXTENSIONS:
        # slicer-core's reader knows only NRRD, NIfTI, MetaImage and DICOM; SimpleITK reads the rest.
        checkReadableImage(filePath, ndims=(2, 3))
        _readWithSimpleITK(volumeNode, filePath)
    else:
        checkReadableImage(filePath, ndims=(2, 3))
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
        # Without SingleFile the archetype reader gathers similarly named files into one volume.
        storageNode.SetSingleFile(1)
        # Keep the file's voxel order: results written back must lie on exactly the same grid.
        storageNode.ForceRightHandedIJKCoordinateSystemOff()
        _readInto(storageNode, volumeNode, filePath, "image")
    if not allowNaN:
        checkVolumeNode(volumeNode, f"image in {filePath}", allowNaN=False)
    return _addToScene(scene, volumeNode, storageNode, name or _baseName(filePath))


def loadSegmentation(scene, path, name: str | None = None):
    """Load a segmentation: Slicer's ``.seg.nrrd`` (segment names, colours, label values and
    layers kept) or a label map image (``.nrrd``, ``.nii``, ``.nii.gz``: one segment per label value).

    Args:
        scene: the ``vtkMRMLScene`` to add the segmentation to.
        path: the segmentation file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new ``vtkMRMLSegmentationNode`` (binary labelmap representation, RAS).

    Raises:
        MedAIInputError: missing, unreadable or unsupported file.
    """
    filePath = checkInputFile(path, "segmentation")
    extension = _extension(filePath)
    if extension not in _SEGMENTATION_EXTENSIONS + (".nrrd", ".nhdr", ".nii", ".nii.gz", ".hdr"):
        raise MedAIInputError(f"The segmentation file {filePath} has an unsupported extension '{extension}'.")
    segmentationNode = slicer.vtkMRMLSegmentationNode()
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    _readInto(storageNode, segmentationNode, filePath, "segmentation")
    return _addToScene(scene, segmentationNode, storageNode, name or _baseName(filePath))


def loadTransform(scene, path, name: str | None = None):
    """Load a transform: an ITK transform file (``.h5``, ``.tfm``, ``.mat``, ``.txt``; linear,
    B-spline or displacement field) or a displacement field image (``.nii.gz``, ``.nrrd``, ``.mha``).

    The file holds the ITK resampling transform (from parent, LPS); the node gets the modeling
    transform to parent in RAS, as Slicer reads it.

    Args:
        scene: the ``vtkMRMLScene`` to add the transform to.
        path: the transform file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        A ``vtkMRMLLinearTransformNode``, ``vtkMRMLBSplineTransformNode``, ``vtkMRMLGridTransformNode``
        or, for composite transforms, a ``vtkMRMLTransformNode``.

    Raises:
        MedAIInputError: missing or unreadable file, or an image that is not a 3D displacement field.
    """
    filePath = checkInputFile(path, "transform")
    extension = _extension(filePath)
    if extension in _IMAGE_EXTENSIONS:
        header = checkReadableImage(filePath, ndims=(3,), what="displacement field", allowVector=True)
        if header.components != 3:
            raise MedAIInputError(
                f"The displacement field file {filePath} has {header.components} value(s) per voxel, but 3 are needed."
            )
        nodeClass = slicer.vtkMRMLGridTransformNode
    else:
        probeNode = slicer.vtkMRMLTransformNode()
        _readInto(slicer.vtkMRMLTransformStorageNode(), probeNode, filePath, "transform")
        kind = slicer.vtkSlicerTransformLogic.GetTransformKind(probeNode)
        nodeClass = {
            slicer.vtkSlicerTransformLogic.TRANSFORM_LINEAR: slicer.vtkMRMLLinearTransformNode,
            slicer.vtkSlicerTransformLogic.TRANSFORM_BSPLINE: slicer.vtkMRMLBSplineTransformNode,
            slicer.vtkSlicerTransformLogic.TRANSFORM_GRID: slicer.vtkMRMLGridTransformNode,
        }.get(kind, slicer.vtkMRMLTransformNode)
    transformNode = nodeClass()
    storageNode = slicer.vtkMRMLTransformStorageNode()
    _readInto(storageNode, transformNode, filePath, "transform")
    return _addToScene(scene, transformNode, storageNode, name or _baseName(filePath))


def loadMarkups(scene, path, name: str | None = None):
    """Load markups: Slicer's ``.mrk.json`` (the first markup in the file, any type), a ``.fcsv``
    point list, or a ``.csv`` of points with columns ``label`` (optional) and ``r``, ``a``, ``s``
    in RAS millimetres (``x``, ``y``, ``z`` are read as R, A, S too).

    Args:
        scene: the ``vtkMRMLScene`` to add the markups to.
        path: the markups file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new markups node (control points in RAS).

    Raises:
        MedAIInputError: missing, unreadable or unsupported file.
    """
    filePath = checkInputFile(path, "markups")
    extension = _extension(filePath)
    storageNode = None
    if extension in (".mrk.json", ".json"):
        storageNode = slicer.vtkMRMLMarkupsJsonStorageNode()
        markupsTypes = []
        with _quietVtk():
            storageNode.GetMarkupsTypesInFile(str(filePath), markupsTypes)
        nodeClass = getattr(slicer, f"vtkMRMLMarkups{markupsTypes[0]}Node", None) if markupsTypes else None
        if nodeClass is None:
            raise MedAIInputError(f"The markups file {filePath} cannot be read: it holds no markups that Slicer knows.")
        markupsNode = nodeClass()
        _readInto(storageNode, markupsNode, filePath, "markups")
    elif extension == ".fcsv":
        lines = _textLines(filePath, "markups")
        storageNode = slicer.vtkMRMLMarkupsFiducialStorageNode()
        markupsNode = slicer.vtkMRMLMarkupsFiducialNode()
        _readInto(storageNode, markupsNode, filePath, "markups")
        # The .fcsv reader skips lines it does not understand instead of failing.
        if markupsNode.GetNumberOfControlPoints() == 0 and any(not line.startswith("#") for line in lines):
            raise MedAIInputError(f"The markups file {filePath} cannot be read: no line is a point.")
    elif extension == ".csv":
        markupsNode = slicer.vtkMRMLMarkupsFiducialNode()
        for label, position in _readPointsCsv(filePath):
            markupsNode.AddControlPoint(*position, label)
    else:
        raise MedAIInputError(f"The markups file {filePath} has an unsupported extension '{extension}'.")
    return _addToScene(scene, markupsNode, storageNode, name or _baseName(filePath))


def loadTable(scene, path, name: str | None = None):
    """Load a table from a ``.tsv``, ``.csv`` or tab-separated ``.txt`` file (with its
    ``.schema.tsv`` beside it when there is one, which keeps column types).

    Args:
        scene: the ``vtkMRMLScene`` to add the table to.
        path: the table file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new ``vtkMRMLTableNode``.

    Raises:
        MedAIInputError: missing, unreadable or unsupported file.
    """
    filePath = checkInputFile(path, "table")
    if _extension(filePath) not in _TABLE_EXTENSIONS + (".txt",):
        raise MedAIInputError(f"The table file {filePath} has an unsupported extension '{_extension(filePath)}'.")
    _textLines(filePath, "table")
    tableNode = slicer.vtkMRMLTableNode()
    storageNode = slicer.vtkMRMLTableStorageNode()
    _readInto(storageNode, tableNode, filePath, "table")
    return _addToScene(scene, tableNode, storageNode, name or _baseName(filePath))


def loadNode(scene, path, name: str | None = None):
    """Load any supported file, choosing the node type from the file name.

    ``.seg.nrrd`` -> segmentation; ``.mrk.json``/``.json``/``.fcsv`` -> markups; ``.tsv``/``.csv``
    -> table; ``.h5``/``.tfm``/``.mat`` and ITK ``.txt`` -> transform; other ``.txt`` -> table;
    an image with 3 values per voxel -> displacement field transform; other images and folders
    -> scalar volume. Use :func:`loadVolume` with ``labelmap=True`` for label maps and
    :func:`loadScene` for ``.mrml``/``.mrb``.

    Args:
        scene: the ``vtkMRMLScene`` to add the node to.
        path: the file, or a DICOM series folder.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new node, as the specific loader returns it.

    Raises:
        MedAIInputError: missing or unreadable file, or an extension that names no node type.
    """
    filePath = checkInputFile(path, "input", allowDirectory=True)
    extension = _extension(filePath)
    if filePath.is_dir() or extension == ".dcm":
        return loadVolume(scene, filePath, name)
    if extension in _SCENE_EXTENSIONS:
        raise MedAIInputError(f"The file {filePath} is a whole scene; load it with loadScene.")
    if extension in _SEGMENTATION_EXTENSIONS:
        return loadSegmentation(scene, filePath, name)
    if extension in _MARKUPS_EXTENSIONS:
        return loadMarkups(scene, filePath, name)
    if extension in _TABLE_EXTENSIONS:
        return loadTable(scene, filePath, name)
    if extension == ".txt":
        with open(filePath, errors="replace") as stream:
            isItkTransform = stream.readline().startswith("#Insight Transform File")
        return loadTransform(scene, filePath, name) if isItkTransform else loadTable(scene, filePath, name)
    if extension in _TRANSFORM_EXTENSIONS:
        return loadTransform(scene, filePath, name)
    header = checkReadableImage(filePath, ndims=(2, 3), allowVector=True)
    if header.components == 3 and header.dimension == 3:
        return loadTransform(scene, filePath, name)
    return loadVolume(scene, filePath, name)


def saveNode(node, path) -> Path:
    """Write one node to a file, choosing the format from the file name.

    Volumes and label maps: ``.nrrd``, ``.nhdr``, ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``.
    Segmentations: ``.seg.nrrd`` (names, colours, label values, overlapping layers kept), or a
    label map image ``.nrrd``/``.nii``/``.nii.gz``/``.mha`` (voxel value = segment label value, on
    the segmentation's own labelmap grid; refused when segments overlap).
    Transforms: ``.h5``, ``.tfm``, ``.txt``, ``.mat`` (ITK resampling convention, LPS), or a
    displacement field image for grid transforms. Markups: ``.mrk.json``, ``.fcsv``, ``.csv``
    (label, r, a, s). Tables: ``.tsv``, ``.csv``.

    The node is not changed (its own storage node is left alone). The file appears only when it
    was written completely.

    Args:
        node: the MRML node to write.
        path: the output file; its folder must exist.

    Returns:
        The absolute path written.

    Raises:
        MedAIInputError: no node, a missing output folder, a format that cannot hold the node, or
            a write that failed.
    """
    if node is None:
        raise MedAIInputError("No node was given to save.")
    filePath = _outputPath(path)
    extension = _extension(filePath)
    if node.IsA("vtkMRMLSegmentationNode") and extension not in _SEGMENTATION_EXTENSIONS:
        if extension not in (".nrrd", ".nii", ".nii.gz", ".mha"):
            raise MedAIInputError(f"A segmentation cannot be saved as '{extension}'; use .seg.nrrd or .nii.gz.")
        _atomicWrite(filePath, lambda target: _writeSegmentationAsLabelmap(node, target))
        return filePath
    if node.IsA("vtkMRMLMarkupsNode") and extension == ".csv":
        _atomicWrite(filePath, lambda target: _writePointsCsv(node, target))
        return filePath
    storageNode = _storageNodeForSaving(node, extension)
    if node.IsA("vtkMRMLTableNode"):
        _atomicWrite(filePath, lambda target: _writeTable(storageNode, node, target))
    else:
        _atomicWrite(filePath, lambda target: _writeWith(storageNode, node, target))
    return filePath


def saveScene(scene, path) -> Path:
    """Save a whole scene: a ``.mrb`` bundle (one zip file) or a ``.mrml`` file with its data.

    For ``<name>.mrml`` the data files go into a ``<name>_Data/`` folder beside it.
    Every node that Slicer would save is written; the scene itself is left as it was.

    Args:
        scene: the ``vtkMRMLScene`` to save.
        path: the ``.mrb`` or ``.mrml`` file; its folder must exist.

    Returns:
        The absolute path of the scene file written.

    Raises:
        MedAIInputError: a missing output folder, another extension, or a write that failed.
    """
    filePath = _outputPath(path)
    extension = _extension(filePath)
    if extension not in _SCENE_EXTENSIONS:
        raise MedAIInputError(f"A scene is saved as .mrml or .mrb, not '{extension}' ({filePath}).")

    unsavable = [
        node.GetName()
        for node in (scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes()))
        if node.IsA("vtkMRMLStorableNode")
        and node.GetSaveWithScene()
        and node.GetStorageNode() is not None
        and not node.GetStorageNode().CanWriteFromReferenceNode(node)
    ]
    if unsavable:
        raise MedAIInputError(f"The scene cannot be saved: the storage node of {', '.join(unsavable)} cannot write it.")
    _keepVoxelOrderOnReload(scene)

    def write(target: Path) -> None:
        with _quietVtk() as messages:
            if extension == ".mrb":
                written = scene.WriteToMRB(str(target))
            else:
                written = _saveMrmlWithDataFolder(scene, target)
        if not written or not target.exists():
            raise MedAIInputError(f"The scene could not be saved to {filePath}: {_firstError(messages)}")

    _atomicWrite(filePath, write)
    return filePath


def loadScene(path, scene=None):
    """Load a ``.mrml`` scene (with its data files) or a ``.mrb`` bundle.

    Args:
        path: the ``.mrml`` or ``.mrb`` file.
        scene: a scene to add the nodes to; None creates a new one with :func:`createScene`.

    Returns:
        The scene holding the loaded nodes, their data read from the files.

    Raises:
        MedAIInputError: missing or unreadable file, not a MRML scene, or a data file that could
            not be read; the nodes added so far are removed again.
    """
    filePath = checkInputFile(path, "scene")
    extension = _extension(filePath)
    if extension not in _SCENE_EXTENSIONS:
        raise MedAIInputError(f"The scene file {filePath} must end in .mrml or .mrb.")
    targetScene = scene if scene is not None else createScene()
    if extension == ".mrml":
        _importMrml(targetScene, filePath, filePath)
        return targetScene
    if not zipfile.is_zipfile(filePath):
        raise MedAIInputError(f"The scene bundle {filePath} is not a .mrb (zip) file.")
    with tempfile.TemporaryDirectory(prefix="medai-mrb-") as folder:
        try:
            with zipfile.ZipFile(filePath) as bundle:
                bundle.extractall(folder)
        except (zipfile.BadZipFile, OSError) as error:
            raise MedAIInputError(f"The scene bundle {filePath} cannot be unpacked: {error}.") from None
        sceneFiles = sorted(Path(folder).rglob("*.mrml"), key=lambda p: len(p.parts))
        if not sceneFiles:
            raise MedAIInputError(f"The scene bundle {filePath} holds no .mrml file.")
        _importMrml(targetScene, sceneFiles[0], filePath)
    # The data now live in memory; forget the unpacked copy so that a save never targets it.
    targetScene.SetURL("")
    targetScene.SetRootDirectory(str(filePath.parent))
    return targetScene


# ---------------------------------------------------------------------------------------------
# Private helpers


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


def _saveMrmlWithDataFolder(scene, target: Path) -> bool:
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


def _keepVoxelOrderOnReload(scene) -> None:
    """Make every volume's storage node reload its file without flipping it to right-handed IJK."""
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if not node.IsA("vtkMRMLVolumeNode") or not node.GetSaveWithScene():
            continue
        storageNode = node.GetStorageNode()
        if storageNode is None:
            with _quietVtk():
                node.AddDefaultStorageNode()
            storageNode = node.GetStorageNode()
        if storageNode is not None and storageNode.IsA("vtkMRMLVolumeArchetypeStorageNode"):
            storageNode.ForceRightHandedIJKCoordinateSystemOff()


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


def _outputPath(path) -> Path:
    if path is None or str(path).strip() == "":
        raise MedAIInputError("No output file was given.")
    filePath = Path(path).expanduser().absolute()
    if not filePath.parent.is_dir():
        raise MedAIInputError(f"The output folder {filePath.parent} does not exist.")
    if filePath.is_dir():
        raise MedAIInputError(f"The output path {filePath} is a folder, but a file name is needed.")
    return filePath


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


def _readWithSimpleITK(volumeNode, path: Path) -> None:
    """Read a DICOM series folder, or any image file SimpleITK reads, into the node (LPS -> RAS)."""
    import SimpleITK as sitk

    try:
        if path.is_dir():
            seriesIds = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
            if not seriesIds:
                raise MedAIInputError(f"The folder {path} holds no DICOM image series.")
            fileLists = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), sid) for sid in seriesIds]
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(max(fileLists, key=len))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise MedAIInputError(f"The image data in {path} cannot be read: {reason}") from None
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() not in (2, 3):
        raise MedAIInputError(
            f"The image in {path} is {image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} "
            "values per voxel, but a 2D or 3D single-value image is needed."
        )
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    dimension = image.GetDimension()
    direction = np.eye(3)
    direction[:dimension, :dimension] = np.reshape(image.GetDirection(), (dimension, dimension))
    spacing, origin = np.ones(3), np.zeros(3)
    spacing[:dimension], origin[:dimension] = image.GetSpacing(), image.GetOrigin()
    lpsToRas = np.diag([-1.0, -1.0, 1.0])
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = lpsToRas @ direction @ np.diag(spacing)
    ijkToRas[:3, 3] = lpsToRas @ origin
    voxels = sitk.GetArrayFromImage(image)
    size = tuple(image.GetSize()) + (1,) * (3 - dimension)
    imageData = vtkImageData()
    imageData.SetDimensions(*size)
    imageData.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(voxels).ravel(), deep=True))
    matrix = vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, ijkToRas[row, column])
    volumeNode.SetAndObserveImageData(imageData)
    volumeNode.SetIJKToRASMatrix(matrix)


def _textLines(filePath: Path, what: str) -> list[str]:
    """The non-empty lines of a text file; binary content is refused as unreadable."""
    try:
        text = filePath.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read: it is not a UTF-8 text file.") from None
    if "\x00" in text:
        raise MedAIInputError(f"The {what} file {filePath} cannot be read: it holds binary data, not text.")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _readPointsCsv(filePath: Path) -> list[tuple[str, tuple[float, float, float]]]:
    rows = [row for row in csv.reader(_textLines(filePath, "points")) if row and not row[0].startswith("#")]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    for names in (("r", "a", "s"), ("x", "y", "z")):
        if all(column in header for column in names):
            columns = [header.index(column) for column in names]
            break
    else:
        raise MedAIInputError(f"The points file {filePath} needs a header with columns r, a, s (RAS millimetres).")
    labelColumn = header.index("label") if "label" in header else None
    points = []
    for lineNumber, row in enumerate(rows[1:], start=2):
        try:
            position = tuple(float(row[column]) for column in columns)
        except (ValueError, IndexError):
            raise MedAIInputError(
                f"Line {lineNumber} of the points file {filePath} has no valid r, a, s numbers."
            ) from None
        label = row[labelColumn] if labelColumn is not None and labelColumn < len(row) else f"P-{len(points) + 1}"
        points.append((label, position))
    return points


def _writePointsCsv(markupsNode, target: Path) -> None:
    with open(target, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label", "r", "a", "s"])
        for index in range(markupsNode.GetNumberOfControlPoints()):
            position = markupsNode.GetNthControlPointPosition(index)
            writer.writerow([markupsNode.GetNthControlPointLabel(index)] + [repr(float(v)) for v in position])


def _storageNodeForSaving(node, extension: str):
    """A fresh storage node able to write this node in this format (the node's own is left alone)."""
    if node.IsA("vtkMRMLVolumeNode"):
        if extension not in (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd"):
            raise MedAIInputError(f"A volume cannot be saved as '{extension}'; use .nrrd, .nii.gz or .mha.")
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    elif node.IsA("vtkMRMLSegmentationNode"):
        storageNode = slicer.vtkMRMLSegmentationStorageNode()
    elif node.IsA("vtkMRMLTransformNode"):
        if extension in _IMAGE_EXTENSIONS and not node.IsA("vtkMRMLGridTransformNode"):
            raise MedAIInputError(
                f"Only a grid (displacement field) transform can be saved as an image ('{extension}')."
            )
        if extension not in _TRANSFORM_EXTENSIONS + (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd"):
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
    storageNode.SetFileName(str(target))
    with _quietVtk() as messages:
        written = storageNode.WriteData(node)
    if not written or not target.exists():
        raise MedAIInputError(
            f"'{node.GetName()}' could not be saved as {target.name}: {_firstError(messages, storageNode)}"
        )


def _writeTable(storageNode, tableNode, target: Path) -> None:
    """Write a table with every floating-point cell in full precision.

    Slicer's table writer prints 6 significant digits; floating-point columns are therefore
    written from a copy as text with all digits, and the schema file is set back to their type.
    """
    from vtkmodules.vtkCommonCore import VTK_DOUBLE, VTK_FLOAT, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkTable

    table = vtkTable()
    table.DeepCopy(tableNode.GetTable())
    copyNode = slicer.vtkMRMLTableNode()
    copyNode.Copy(tableNode)
    copyNode.SetAndObserveTable(table)
    convertedTypes = {}
    for index in range(table.GetNumberOfColumns()):
        column = table.GetColumn(index)
        if column.GetDataType() not in (VTK_DOUBLE, VTK_FLOAT) or column.GetNumberOfComponents() != 1:
            continue
        text = vtkStringArray()
        text.SetName(column.GetName())
        for row in range(column.GetNumberOfTuples()):
            text.InsertNextValue(repr(float(column.GetValue(row))))
        convertedTypes[column.GetName()] = "double" if column.GetDataType() == VTK_DOUBLE else "float"
        table.RemoveColumn(index)
        table.InsertColumn(text, index)
    _writeWith(storageNode, copyNode, target)
    if not convertedTypes:
        return
    # Slicer writes no schema when every column is text, as the copy may now be.
    schemaPath = target.with_name(f"{target.stem}.schema{target.suffix}")
    delimiter = "," if target.suffix.lower() == ".csv" else "\t"
    if schemaPath.is_file():
        with open(schemaPath, newline="") as stream:
            rows = list(csv.reader(stream, delimiter=delimiter))
    else:
        rows = [["columnName", "type", "componentNames"]]
        rows += [[table.GetColumn(i).GetName(), "string", ""] for i in range(table.GetNumberOfColumns())]
    for row in rows[1:]:
        if row and row[0] in convertedTypes:
            row[1] = convertedTypes[row[0]]
    with open(schemaPath, "w", newline="") as stream:
        csv.writer(stream, delimiter=delimiter, lineterminator="\n").writerows(rows)


def _writeSegmentationAsLabelmap(segmentationNode, target: Path) -> None:
    """Write a segmentation as one label map image (voxel value = segment label value)."""
    import SimpleITK as sitk

    nrrdPath = target.parent / (_baseName(target) + ".medai-labelmap.nrrd")
    _writeWith(slicer.vtkMRMLSegmentationStorageNode(), segmentationNode, nrrdPath)
    image = sitk.ReadImage(str(nrrdPath))
    nrrdPath.unlink()
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise MedAIInputError(
            f"The segments of '{segmentationNode.GetName()}' overlap, so they do not fit in one label map; "
            "save it as .seg.nrrd instead."
        )
    # Only the geometry and the label values belong in a plain label map, not Slicer's segment keys.
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    sitk.WriteImage(image, str(target), useCompression=True)


def _atomicWrite(filePath: Path, write) -> None:
    """Write into a temporary folder beside the target, then move everything written into place.

    Companion files (a ``.raw.gz`` beside a ``.nhdr``, a ``.schema.tsv`` beside a table, the
    ``Data/`` folder beside a ``.mrml``) are moved first and the main file last.
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
