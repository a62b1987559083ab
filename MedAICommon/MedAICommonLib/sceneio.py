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

The loaders of each kind of data live in :mod:`~MedAICommonLib.volumeio` (including DICOM series),
:mod:`~MedAICommonLib.segmentationio`, :mod:`~MedAICommonLib.transformio`,
:mod:`~MedAICommonLib.markupsio` and :mod:`~MedAICommonLib.tableio`, and are importable from here;
the storage-node machinery they share is in :mod:`~MedAICommonLib.nodeio`, the ``.mrml``/``.mrb``
details in :mod:`~MedAICommonLib.mrmlio`.

Example:
    >>> scene = createScene()
    >>> volumeNode = loadVolume(scene, "head.nii.gz")  # doctest: +SKIP
    >>> saveScene(scene, "case.mrb")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import slicer

from .errors import MedAIInputError
from .markupsio import _writePointsCsv, loadMarkups
from .mrmlio import _importMrb, _importMrml, _writeMrmlWithDataFolder
from .nodeio import (
    _MARKUPS_EXTENSIONS,
    _SCENE_EXTENSIONS,
    _SEGMENTATION_EXTENSIONS,
    _TABLE_EXTENSIONS,
    _TRANSFORM_EXTENSIONS,
    _atomicWrite,
    _extension,
    _firstError,
    _outputPath,
    _quietVtk,
    _storageNodeForSaving,
    _writeWith,
)
from .segmentationio import _writeSegmentationAsLabelmap, loadSegmentation
from .tableio import _writeTable, loadTable
from .transformio import loadTransform
from .validation import checkInputFile, checkReadableImage
from .volumeio import _keepVoxelOrderOnReload, loadVolume

__all__ = [
    "createScene",
    "loadNode",
    "loadScene",
    "saveNode",
    "saveScene",
    "removeNodes",
    # Defined in volumeio, segmentationio, transformio, markupsio and tableio; importable from here too.
    "loadVolume",
    "loadSegmentation",
    "loadTransform",
    "loadMarkups",
    "loadTable",
]


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


def removeNodes(scene, nodes) -> None:
    """Remove nodes from a scene together with their display and storage nodes.

    On slicer-core ``RemoveNode`` leaves a node's display and storage nodes behind (in the
    desktop the modules' logics remove them), so a failed operation that only removed what it
    added would still change the scene.

    Args:
        scene: the ``vtkMRMLScene``.
        nodes: the nodes to remove; None items and nodes no longer in the scene are skipped.
    """
    for node in nodes:
        if node is None:
            continue
        helpers = []
        for countMethod, nthMethod in (
            ("GetNumberOfDisplayNodes", "GetNthDisplayNode"),
            ("GetNumberOfStorageNodes", "GetNthStorageNode"),
        ):
            if hasattr(node, countMethod):
                helpers += [getattr(node, nthMethod)(index) for index in range(getattr(node, countMethod)())]
        for helper in [*helpers, node]:
            if helper is not None and scene.IsNodePresent(helper):
                scene.RemoveNode(helper)


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
                written = _writeMrmlWithDataFolder(scene, target)
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
    else:
        _importMrb(targetScene, filePath)
    return targetScene
