"""Real sample data by name, checked against the sha256 recorded in the manifest.

The manifest ``Resources/SampleData/SampleData.json`` lists every item: its source file (a
Debian or PyPI package and the path inside it) with the sha256 measured on that file, what it
is (modality, kind, licence, label names and colours, the known transform of the ITK 2D
registration pairs) and what a MRML node reports after loading it (size, spacing, value range).
Nothing is downloaded here: ``.ci/fetch_sample_data.sh`` installs the packages beforehand.

Where source files are looked for, in order:

- Debian packages: ``<data dir>/debian/<path>`` (unpacked without root), then ``/<path>``;
- PyPI packages: the package's folder, found with ``importlib.util.find_spec`` (not imported);
- the stardist images: ``<data dir>/stardist/<file>``.

The data dir is ``$MEDAI_DATA_DIR``, else ``<checkout>/.medai-data``, else ``~/.medai-data``.
Items whose source is not a file that Slicer and SimpleITK read as is (the InVesalius project
holding HeadCT, PNG and TIFF images, masks and label maps that become segmentations, landmark
text files) are converted once into ``<data dir>/converted/`` (NRRD, ``.seg.nrrd`` with names and
colours, ``.mrk.json``), written atomically and redone when the source or the recipe changes.

Example:
    >>> path = sampleDataPath("Colin27")  # doctest: +SKIP
    >>> volumeNode = loadSampleData(scene, "HeadCT")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import MedAIInputError
from .resources import repositoryRoot, resourcesDir

__all__ = [
    "sampleDataNames",
    "sampleDataInfo",
    "sampleDataDir",
    "sampleDataPath",
    "loadSampleData",
    "slicerLoadType",
    "slicerLoadProperties",
    "KnownTransform",
    "knownTransform",
    "fileSha256",
]

# Bump when a conversion below changes its output, so that cached files are made again.
_CONVERTER_VERSION = 1
_SETUP_HINT = "run 'bash .ci/quickstart setup' (or '.ci/fetch_sample_data.sh') in the MedAI checkout"
_CONVERTED_EXTENSIONS = {"segmentation": ".seg.nrrd", "landmarks": ".mrk.json"}
_SLICER_LOAD_TYPES = {"segmentation": "SegmentationFile", "landmarks": "MarkupsFile"}
_checksums: dict[str, tuple[int, int, str]] = {}
_conversionLock = threading.Lock()


@lru_cache(maxsize=1)
def _manifest() -> dict[str, Any]:
    with open(resourcesDir() / "SampleData" / "SampleData.json", encoding="utf-8") as stream:
        manifest = json.load(stream)
    manifest["byName"] = {item["name"]: item for item in manifest["items"]}
    return manifest


def _item(name: str) -> dict[str, Any]:
    items = _manifest()["byName"]
    if name not in items:
        raise MedAIInputError(f"There is no sample data named '{name}'; known names: {', '.join(items)}.")
    return items[name]


def sampleDataNames() -> list[str]:
    """The names of all sample data items, in manifest order."""
    return [item["name"] for item in _manifest()["items"]]


def sampleDataInfo(name: str) -> dict[str, Any]:
    """A copy of the manifest entry of one item, plus how Slicer's Sample Data module loads it.

    Keys: ``name``, ``description``, ``modality``, ``kind`` (``volume``, ``2D image``, ``labelmap``,
    ``segmentation`` or ``landmarks``), ``source`` (``package``, ``path``, ``sha256``, ``sizeBytes``)
    with ``registry``/``version`` of the package, ``licence``, ``size`` (i, j, k) and ``spacingMm``
    as a MRML node reports them; where they apply ``valueRange``, ``labels`` (``value``, ``name``,
    ``color`` RGB 0-1), ``conversion``, ``fixed`` and ``knownTransform`` (ITK resampling
    convention, LPS); and ``slicerLoadType`` / ``slicerLoadProperties``.

    Raises:
        MedAIInputError: no item has this name.
    """
    info = copy.deepcopy(_item(name))
    package = _manifest()["packages"][info["source"]["package"]]
    info["source"].update(registry=package["registry"], version=package["version"])
    info["slicerLoadType"] = slicerLoadType(name)
    info["slicerLoadProperties"] = slicerLoadProperties(name)
    return info


def slicerLoadType(name: str) -> str:
    """The file type to give ``slicer.util.loadNodeFromFile`` for :func:`sampleDataPath`'s file:
    ``VolumeFile``, ``SegmentationFile`` or ``MarkupsFile``."""
    return _SLICER_LOAD_TYPES.get(_item(name)["kind"], "VolumeFile")


def slicerLoadProperties(name: str) -> dict[str, Any]:
    """Load properties for ``slicer.util.loadNodeFromFile``: ``{"labelmap": True}`` for label maps."""
    return {"labelmap": True} if _item(name)["kind"] == "labelmap" else {}


def sampleDataDir(dataDir: str | os.PathLike | None = None) -> Path:
    """The folder for unpacked Debian files, stardist images and converted items.

    Args:
        dataDir: use this folder; None: ``$MEDAI_DATA_DIR``, else ``<checkout>/.medai-data``,
            else ``~/.medai-data`` (installed extension).
    """
    if dataDir is None and os.environ.get("MEDAI_DATA_DIR"):
        dataDir = os.environ["MEDAI_DATA_DIR"]
    if dataDir is not None:
        return Path(dataDir).expanduser().absolute()
    root = repositoryRoot()
    return root / ".medai-data" if root is not None else Path.home() / ".medai-data"


def fileSha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, computed once per process while its size and mtime stay the same."""
    filePath = Path(path).absolute()
    stat = filePath.stat()
    cached = _checksums.get(str(filePath))
    if cached is not None and cached[:2] == (stat.st_size, stat.st_mtime_ns):
        return cached[2]
    digest = hashlib.sha256()
    with open(filePath, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    _checksums[str(filePath)] = (stat.st_size, stat.st_mtime_ns, digest.hexdigest())
    return digest.hexdigest()


def _sourceCandidates(item: dict[str, Any], dataDir: Path) -> list[Path]:
    source = item["source"]
    package = _manifest()["packages"][source["package"]]
    if package["registry"] == "debian":
        return [dataDir / "debian" / source["path"], Path("/") / source["path"]]
    if package["registry"] == "pypi":
        # find_spec of a top-level name locates the package without importing it.
        spec = importlib.util.find_spec(package["module"])
        folders = (spec.submodule_search_locations or []) if spec is not None else []
        return [Path(folder) / source["path"] for folder in folders]
    return [dataDir / source["package"] / source["path"]]


def _verifiedSource(item: dict[str, Any], dataDir: Path) -> Path:
    """The item's source file after its sha256 was checked against the manifest."""
    candidates = _sourceCandidates(item, dataDir)
    found = next((path for path in candidates if path.is_file()), None)
    source = item["source"]
    if found is None:
        registry = _manifest()["packages"][source["package"]]["registry"]
        what = {"debian": "Debian package", "pypi": "Python package"}.get(registry, "wheel of the Python package")
        looked = ", ".join(str(path) for path in candidates) or f"the {source['package']} package folder"
        raise MedAIInputError(
            f"Sample data '{item['name']}' is missing: the {what} '{source['package']}' is not installed "
            f"(looked for {looked}); {_SETUP_HINT}."
        )
    actual = fileSha256(found)
    if actual != source["sha256"]:
        raise MedAIInputError(
            f"The file {found} of sample data '{item['name']}' has sha256 {actual}, but the manifest expects "
            f"{source['sha256']}; it is damaged or comes from another package version ({_SETUP_HINT} again)."
        )
    return found


def sampleDataPath(name: str, dataDir: str | os.PathLike | None = None) -> Path:
    """The checked file of one item, ready for Slicer, SimpleITK or any NRRD/NIfTI/DICOM reader.

    Args:
        name: an item name (see :func:`sampleDataNames`).
        dataDir: the data folder; None: see :func:`sampleDataDir`.

    Returns:
        The source file itself, or for items with a ``conversion`` the converted file under
        ``<data dir>/converted/`` (made on first use, atomically).

    Raises:
        MedAIInputError: unknown name, a missing package (with how to install it), a source whose
            sha256 differs from the manifest (naming the file and both sums), or a data folder
            that cannot be written.
    """
    item = _item(name)
    folder = sampleDataDir(dataDir)
    source = _verifiedSource(item, folder)
    if "conversion" not in item:
        return source
    return _convertedFile(item, source, folder / "converted")


def loadSampleData(scene: Any, name: str, dataDir: str | os.PathLike | None = None) -> Any:
    """Load one item into a scene as the node its kind calls for, named after the item.

    Args:
        scene: the ``vtkMRMLScene`` to load into.
        name: an item name (see :func:`sampleDataNames`).
        dataDir: the data folder; None: see :func:`sampleDataDir`.

    Returns:
        A ``vtkMRMLScalarVolumeNode`` (volumes and 2D images, one slice thick), a
        ``vtkMRMLLabelMapVolumeNode`` (with a colour table naming its labels when the manifest
        does), a ``vtkMRMLSegmentationNode`` (segment names, colours and label values from the
        manifest) or a ``vtkMRMLMarkupsFiducialNode`` (RAS millimetres).

    Raises:
        MedAIInputError: no scene, or as :func:`sampleDataPath`; the scene is left as it was.
    """
    from . import sceneio

    if scene is None or not hasattr(scene, "AddNode"):
        raise MedAIInputError("loadSampleData needs a vtkMRMLScene to load into.")
    item = _item(name)
    path = sampleDataPath(name, dataDir)
    if item["kind"] == "segmentation":
        return sceneio.loadSegmentation(scene, path, name)
    if item["kind"] == "landmarks":
        return sceneio.loadMarkups(scene, path, name)
    volumeNode = sceneio.loadVolume(scene, path, name, labelmap=item["kind"] == "labelmap")
    if item["kind"] == "labelmap" and item.get("labels"):
        try:
            _attachColorTable(volumeNode, item["labels"])
        except Exception:
            scene.RemoveNode(volumeNode)
            raise
    return volumeNode


def _attachColorTable(volumeNode: Any, labels: list[dict[str, Any]]) -> None:
    import slicer

    scene = volumeNode.GetScene()
    colorNode = slicer.vtkMRMLColorTableNode()
    colorNode.SetTypeToUser()
    colorNode.SetNumberOfColors(max(label["value"] for label in labels) + 1)
    for value in range(colorNode.GetNumberOfColors()):
        colorNode.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
    for label in labels:
        colorNode.SetColor(label["value"], label["name"], *label["color"], label.get("opacity", 1.0))
    colorNode.SetName(scene.GenerateUniqueName(f"{volumeNode.GetName()}Colors"))
    scene.AddNode(colorNode)
    volumeNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())


class KnownTransform(NamedTuple):
    """A transform known to align two ITK 2D sample images (see :func:`knownTransform`)."""

    transform: Any  #: 2D SimpleITK transform, ITK resampling convention, LPS millimetres
    fixedName: str  #: the item whose points the transform maps
    movingName: str  #: the item those points land in


def knownTransform(name: str) -> KnownTransform:
    """The exact transform between one moving image of the ITK 2D pairs and its fixed image.

    Args:
        name: a moving image of the ITK 2D registration pairs (its manifest entry has
            ``knownTransform``).

    Returns:
        ``(transform, fixedName, movingName)``: a 2D ``SimpleITK`` transform in the ITK resampling
        convention, LPS millimetres, mapping a point of ``fixedName`` to the matching point of
        ``movingName``, so ``Resample(moving, fixed, transform)`` aligns the two. The fixed image is
        ``BrainProtonDensitySliceBorder20``, except for the B-spline pair, whose exact transform
        runs from ``BrainProtonDensitySliceBSplined10`` to ``BrainProtonDensitySliceBorder20``
        (the other way is the inverse of a B-spline, which has no closed form).

    Raises:
        MedAIInputError: the item has no known transform.
    """
    spec = _item(name).get("knownTransform")
    if spec is None:
        withTransform = [item["name"] for item in _manifest()["items"] if "knownTransform" in item]
        raise MedAIInputError(
            f"Sample data '{name}' has no known transform; these have one: {', '.join(withTransform)}."
        )
    return KnownTransform(_sitkTransform(spec), spec["fixedImage"], spec["movingImage"])


def _sitkTransform(spec: dict[str, Any]) -> Any:
    import SimpleITK as sitk

    angle = np.deg2rad(spec.get("angleDeg", 0.0))
    if spec["type"] == "TranslationTransform":
        return sitk.TranslationTransform(2, spec["translationMm"])
    if spec["type"] == "Euler2DTransform":
        return sitk.Euler2DTransform(spec["centerMm"], angle, spec["translationMm"])
    if spec["type"] == "Similarity2DTransform":
        return sitk.Similarity2DTransform(spec["scale"], angle, spec["translationMm"], spec["centerMm"])
    transform = sitk.BSplineTransform(2, spec["order"])
    transform.SetTransformDomainOrigin(spec["domainOriginMm"])
    transform.SetTransformDomainPhysicalDimensions(spec["domainPhysicalDimensionsMm"])
    transform.SetTransformDomainMeshSize(spec["meshSize"])
    transform.SetTransformDomainDirection(np.ravel(spec["domainDirection"]).tolist())
    coefficients = np.asarray(spec["coefficientsMm"], dtype=float)
    # ITK orders B-spline parameters as all x displacements, then all y displacements.
    transform.SetParameters(np.concatenate([coefficients[:, 0], coefficients[:, 1]]).tolist())
    return transform


# ---------------------------------------------------------------------------------------------
# Conversion into <data dir>/converted/


def _convertedFile(item: dict[str, Any], source: Path, folder: Path) -> Path:
    """The cached conversion of ``source``; made again when the source or the recipe changed."""
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
        for index, (x, y) in enumerate(table):
            markupsNode.AddControlPoint(-float(x), -float(y), 0.0, f"{item['name']}-{index + 1}")
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
