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
text files) are converted once into ``<data dir>/converted/`` by
:mod:`MedAICommonLib.sampledataconvert`. Checksums come from :mod:`MedAICommonLib.checksums`
(``fileSha256`` stays importable from here).

Example:
    >>> path = sampleDataPath("Colin27")  # doctest: +SKIP
    >>> volumeNode = loadSampleData(scene, "HeadCT")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .checksums import fileSha256
from .errors import MedAIInputError
from .resources import repositoryRoot, resourcesDir
from .sampledataconvert import convertedFile

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

_SETUP_HINT = "run 'bash .ci/quickstart setup' (or '.ci/fetch_sample_data.sh') in the MedAI checkout"
_SLICER_LOAD_TYPES = {"segmentation": "SegmentationFile", "landmarks": "MarkupsFile"}


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
    return convertedFile(item, source, folder / "converted")


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
            sceneio.removeNodes(scene, [volumeNode])
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
