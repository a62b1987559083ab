"""Conversions of sample data into files that Slicer and SimpleITK read as is, cached on disk.

Used by :mod:`MedAICommonLib.sampledata` for the manifest items with a ``conversion``: the
InVesalius project holding HeadCT (``inv3Volume``, ``inv3Mask``), PNG and TIFF images
(``scalarNrrd``), masks and label maps that become segmentations with the manifest's names and
colours (``binaryMask``, ``labelSegmentation``) and ITK landmark text (``landmarks``). Each is
converted once into ``<data dir>/converted/`` (NRRD, ``.seg.nrrd``, ``.mrk.json``), written
atomically and redone when the source or the recipe changes.

Example:
    >>> convertedFile(item, source, dataDir / "converted")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .checksums import fileSha256
from .errors import MedAIInputError
from .geometry import lpsToRas

__all__ = ["convertedFile"]

# Bump when a conversion below changes its output, so that cached files are made again.
_CONVERTER_VERSION = 1
_CONVERTED_EXTENSIONS = {"segmentation": ".seg.nrrd", "landmarks": ".mrk.json"}
_conversionLock = threading.Lock()


def convertedFile(item: dict[str, Any], source: Path, folder: Path) -> Path:
    """The conversion of one item's source file, cached in ``folder`` and made again when the
    source or the recipe changed.

    Args:
        item: the item's manifest entry (``name``, ``kind``, ``source.sha256``, ``conversion``
            with its ``method``, and ``labels`` where it has them).
        source: the source file, its sha256 already checked against the manifest.
        folder: the cache, ``<data dir>/converted/``; made if missing.

    Returns:
        ``<folder>/<name>.nrrd``, ``.seg.nrrd`` (segmentations) or ``.mrk.json`` (landmarks),
        written atomically with a ``.json`` stamp beside it (recipe key and the file's sha256).

    Raises:
        MedAIInputError: the folder cannot be written, or the source cannot be read or is not
            what the recipe expects (a colour image for a grey one); nothing is left behind.
    """
    target = folder / (item["name"] + _CONVERTED_EXTENSIONS.get(item["kind"], ".nrrd"))
    stamp = target.with_name(target.name + ".json")
    recipe = {key: item.get(key) for key in ("kind", "conversion", "labels")}
    recipe.update(converter=_CONVERTER_VERSION, source=item["source"]["sha256"])
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    with _conversionLock:
        if _stampMatches(stamp, target, key):
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            workFolder = Path(tempfile.mkdtemp(prefix=f".{item['name']}.", suffix=".partial", dir=folder))
        except OSError as error:
            raise MedAIInputError(
                f"Sample data '{item['name']}' needs converting, but {folder} cannot be written ({error.strerror}); "
                "set MEDAI_DATA_DIR to a writable folder."
            ) from None
        try:
            written = workFolder / target.name
            _CONVERTERS[item["conversion"]["method"]](item, source, written)
            stampText = json.dumps({"recipe": key, "sha256": fileSha256(written)})
            (workFolder / stamp.name).write_text(stampText, encoding="utf-8")
            os.replace(written, target)
            os.replace(workFolder / stamp.name, stamp)
        finally:
            shutil.rmtree(workFolder, ignore_errors=True)
    return target


def _stampMatches(stamp: Path, target: Path, key: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
        return recorded["recipe"] == key and fileSha256(target) == recorded["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _labelArray(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (KJI) and IJK-to-RAS of an image file, read by Slicer's own reader."""
    import slicer

    from .sceneio import loadVolume
    from .volumes import arrayFromVolume, ijkToRasFromVolume

    scene = slicer.vtkMRMLScene()
    try:
        volumeNode = loadVolume(scene, path, "source")
        return arrayFromVolume(volumeNode), ijkToRasFromVolume(volumeNode)
    finally:
        scene.Clear(1)


def _writeSegmentation(item: dict[str, Any], labelArray: np.ndarray, ijkToRas: np.ndarray, target: Path) -> None:
    import slicer

    from .sceneio import saveNode
    from .segmentations import SegmentInfo, createSegmentationFromLabelmap

    segments = [SegmentInfo(label["name"], tuple(label["color"]), label["value"]) for label in item["labels"]]
    scene = slicer.vtkMRMLScene()
    try:
        segmentationNode = createSegmentationFromLabelmap(scene, labelArray, ijkToRas, segments, item["name"])
        segmentation = segmentationNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            # Without this Slicer may rename or recolour the segments when it opens the file.
            segmentation.GetNthSegment(index).SetNameAutoGenerated(False)
            segmentation.GetNthSegment(index).SetColorAutoGenerated(False)
        saveNode(segmentationNode, target)
    finally:
        scene.Clear(1)


def _convertScalarNrrd(item: dict[str, Any], source: Path, target: Path) -> None:
    """PNG/TIFF to NRRD (slicer-core reads neither); grey RGB PNGs keep one channel."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(source))
    if image.GetNumberOfComponentsPerPixel() > 1:
        channels = sitk.GetArrayViewFromImage(image)
        if not all(np.array_equal(channels[..., 0], channels[..., c]) for c in range(1, channels.shape[-1])):
            raise MedAIInputError(f"The image {source} of sample data '{item['name']}' is in colour, not grey.")
        image = sitk.VectorIndexSelectionCast(image, 0)
    sitk.WriteImage(image, str(target), useCompression=True)


def _convertBinaryMask(item: dict[str, Any], source: Path, target: Path) -> None:
    voxels, ijkToRas = _labelArray(source)
    mask = (voxels > item["conversion"]["thresholdAbove"]).astype(np.uint8)
    _writeSegmentation(item, mask * item["labels"][0]["value"], ijkToRas, target)


def _convertLabelSegmentation(item: dict[str, Any], source: Path, target: Path) -> None:
    voxels, ijkToRas = _labelArray(source)
    _writeSegmentation(item, voxels, ijkToRas, target)


def _readInv3(item: dict[str, Any], source: Path, member: str) -> tuple[np.ndarray, list[float]]:
    """One array of an InVesalius project (a tar.gz of plists and raw arrays), with the CT spacing.

    ``member`` is ``matrix`` (the CT, int16 Hounsfield units, shape in ``main.plist``) or
    ``mask_<n>``; masks are one voxel larger per axis (the first plane of each axis holds
    InVesalius' bookkeeping), so their data part is ``mask[1:, 1:, 1:]``.
    """
    import plistlib
    import tarfile

    try:
        with tarfile.open(source, "r:gz") as archive:
            files = {Path(info.name).name: info for info in archive.getmembers() if info.isfile()}
            main = plistlib.loads(archive.extractfile(files["main.plist"]).read())
            shape = tuple(main["matrix"]["shape"])
            dtype = np.dtype(main["matrix"]["dtype"])
            if member != "matrix":
                shape = tuple(plistlib.loads(archive.extractfile(files[member + ".plist"]).read())["mask_shape"])
                dtype = np.dtype(np.uint8)
            raw = archive.extractfile(
                files[main["matrix"]["filename"] if member == "matrix" else member + ".dat"]
            ).read()
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    except (tarfile.TarError, KeyError, ValueError, OSError) as error:
        raise MedAIInputError(
            f"The InVesalius project {source} of sample data '{item['name']}' cannot be read: {error}."
        ) from None
    return (array if member == "matrix" else array[1:, 1:, 1:]), [float(s) for s in main["spacing"]]


def _inv3IjkToRas(shapeKji: tuple[int, ...], spacingMm: list[float]) -> np.ndarray:
    """Columns run to the patient's left, rows to anterior, slices to superior (what the images
    show: the head rest behind the head at row 0, the face at the low slices); centred on 0."""
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = np.diag([-spacingMm[0], spacingMm[1], spacingMm[2]])
    centreIjk = (np.array(shapeKji[::-1], dtype=float) - 1.0) / 2.0
    ijkToRas[:3, 3] = -ijkToRas[:3, :3] @ centreIjk
    return ijkToRas


def _convertInv3Volume(item: dict[str, Any], source: Path, target: Path) -> None:
    import slicer

    from .sceneio import saveNode
    from .volumes import createVolumeFromArray

    voxels, spacingMm = _readInv3(item, source, "matrix")
    scene = slicer.vtkMRMLScene()
    try:
        volumeNode = createVolumeFromArray(scene, voxels, _inv3IjkToRas(voxels.shape, spacingMm), item["name"])
        saveNode(volumeNode, target)
    finally:
        scene.Clear(1)


def _convertInv3Mask(item: dict[str, Any], source: Path, target: Path) -> None:
    mask, spacingMm = _readInv3(item, source, f"mask_{item['conversion']['mask']}")
    # InVesalius marks the voxels of a mask 255; lower values are unselected or bookkeeping.
    labels = (mask > 127).astype(np.uint8) * item["labels"][0]["value"]
    _writeSegmentation(item, labels, _inv3IjkToRas(mask.shape, spacingMm), target)


def _convertLandmarks(item: dict[str, Any], source: Path, target: Path) -> None:
    """ITK landmark text (x y per column pair, LPS mm of a 2D image) to a Slicer markups file (RAS)."""
    import slicer

    from .sceneio import saveNode

    columns = item["conversion"]["columns"]
    try:
        table = np.loadtxt(source, ndmin=2)[:, columns]
    except (ValueError, IndexError) as error:
        raise MedAIInputError(
            f"The landmark file {source} of sample data '{item['name']}' cannot be read: {error}."
        ) from None
    scene = slicer.vtkMRMLScene()
    try:
        markupsNode = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", item["name"])
        pointsRas = lpsToRas(np.column_stack([table, np.zeros(len(table))]))
        for index, point in enumerate(pointsRas):
            markupsNode.AddControlPoint(*point, f"{item['name']}-{index + 1}")
        saveNode(markupsNode, target)
    finally:
        scene.Clear(1)


_CONVERTERS = {
    "scalarNrrd": _convertScalarNrrd,
    "binaryMask": _convertBinaryMask,
    "labelSegmentation": _convertLabelSegmentation,
    "inv3Volume": _convertInv3Volume,
    "inv3Mask": _convertInv3Mask,
    "landmarks": _convertLandmarks,
}
