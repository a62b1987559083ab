"""Loading and saving segmentations: Slicer's ``.seg.nrrd``, or a plain label map image.

A ``.seg.nrrd`` keeps segment names, colours, label values and overlapping layers. A label map
image (``.nrrd``, ``.nii``, ``.nii.gz``) holds one value per voxel: it is read as one segment per
label value, and written only when no segments overlap. Geometry is LPS in the files, RAS in the node.
"""

from __future__ import annotations

from pathlib import Path

import slicer

from .errors import MedAIInputError
from .nodeio import _SEGMENTATION_EXTENSIONS, _addToScene, _baseName, _checkExtension, _readInto, _writeWith
from .validation import checkInputFile

__all__ = ["loadSegmentation"]


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
    _checkExtension(filePath, _SEGMENTATION_EXTENSIONS + (".nrrd", ".nhdr", ".nii", ".nii.gz", ".hdr"), "segmentation")
    segmentationNode = slicer.vtkMRMLSegmentationNode()
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    _readInto(storageNode, segmentationNode, filePath, "segmentation")
    return _addToScene(scene, segmentationNode, storageNode, name or _baseName(filePath))


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
