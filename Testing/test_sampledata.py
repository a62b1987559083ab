"""Sample data: every item of the manifest loads from the real package files with the documented
geometry, names and transforms; damaged or missing files give one clear message."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.segmentations import labelmapFromSegmentation
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

NAMES = sampledata.sampleDataNames()
NODE_CLASSES = {
    "volume": "vtkMRMLScalarVolumeNode",
    "2D image": "vtkMRMLScalarVolumeNode",
    "labelmap": "vtkMRMLLabelMapVolumeNode",
    "segmentation": "vtkMRMLSegmentationNode",
    "landmarks": "vtkMRMLMarkupsFiducialNode",
}
# The items the foundation issue and DATA.md ask for by name.
REQUIRED = [
    "Colin27", "Colin27BrainMask", "Colin27AAL", "Colin27Brodmann", "MNI152T1", "MNI152GreyMatter",
    "MNI152WhiteMatter", "HeadCT", "HeadCTBone", "NucleiImage2D", "NucleiMask2D", "ChestXRay",
    "BrainProtonDensitySlice", "BrainT1Slice", "BrainProtonDensitySliceShifted13x17y",
    "BrainProtonDensitySliceRotated10", "BrainProtonDensitySliceR10X13Y17", "BrainProtonDensitySliceR10X13Y17S12",
    "BrainProtonDensitySliceBSplined10", "KmeansT1", "KmeansT1Labels",
]  # fmt: skip
MOVING = [name for name in NAMES if "knownTransform" in sampledata.sampleDataInfo(name)]


def _debianFile(path: str) -> Path:
    """A file of an installed Debian package, unpacked in the data dir or installed system-wide."""
    for candidate in (sampledata.sampleDataDir() / "debian" / path, Path("/") / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(path)


def _copyWithFlippedByte(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def _correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def test_manifest_lists_the_required_items_with_full_entries():
    assert len(set(NAMES)) == len(NAMES)
    assert set(REQUIRED) <= set(NAMES)
    for name in NAMES:
        info = sampledata.sampleDataInfo(name)
        assert info["kind"] in NODE_CLASSES, name
        assert info["description"] and info["licence"] and info["modality"], name
        assert len(info["source"]["sha256"]) == 64 and info["source"]["registry"] in ("debian", "pypi", "pypi-wheel")
        if info["kind"] == "landmarks":
            assert info["pointCount"] > 0
        else:
            assert len(info["size"]) == 3 and len(info["spacingMm"]) == 3, name
        if info["kind"] == "segmentation":
            values = [label["value"] for label in info["labels"]]
            assert len(values) == len(set(values)) and min(values) >= 1, name
        if "knownTransform" in info:
            assert info["fixed"] in NAMES and "resampling" in info["knownTransform"]["convention"]


def test_info_is_a_copy_with_slicer_load_hints():
    info = sampledata.sampleDataInfo("HeadCTBone")
    assert (info["slicerLoadType"], info["slicerLoadProperties"]) == ("SegmentationFile", {})
    assert sampledata.slicerLoadType("Colin27") == "VolumeFile"
    assert sampledata.slicerLoadProperties("NucleiMask2D") == {"labelmap": True}
    assert sampledata.slicerLoadType("BrainSliceLandmarksFixed") == "MarkupsFile"
    info["labels"][0]["name"] = "changed"
    assert sampledata.sampleDataInfo("HeadCTBone")["labels"][0]["name"] == "Bone"


@pytest.mark.parametrize("name", NAMES)
def test_item_loads_with_documented_geometry(scene, name):
    info = sampledata.sampleDataInfo(name)
    node = sampledata.loadSampleData(scene, name)
    assert node.GetClassName() == NODE_CLASSES[info["kind"]]
    assert node.GetName() == name and node.GetScene() is scene
    if info["kind"] == "landmarks":
        assert node.GetNumberOfControlPoints() == info["pointCount"]
        return
    if info["kind"] == "segmentation":
        segmentation = node.GetSegmentation()
        segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
        assert [s.GetName() for s in segments] == [label["name"] for label in info["labels"]]
        assert [s.GetLabelValue() for s in segments] == [label["value"] for label in info["labels"]]
        np.testing.assert_allclose(
            [s.GetColor() for s in segments], [label["color"] for label in info["labels"]], atol=1e-6
        )
        image = segments[0].GetRepresentation("Binary labelmap")
        extent = image.GetExtent()
        size = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
        spacing = image.GetSpacing()
    else:
        size, spacing = node.GetImageData().GetDimensions(), node.GetSpacing()
        voxels = arrayFromVolume(node)
        np.testing.assert_allclose([voxels.min(), voxels.max()], info["valueRange"], rtol=1e-4, atol=1e-4)
    assert list(size) == info["size"]
    np.testing.assert_allclose(spacing, info["spacingMm"], atol=1e-6)
    if info["kind"] == "2D image":
        assert size[2] == 1


def test_aal_segments_carry_the_atlas_names_on_the_right_side(scene):
    info = sampledata.sampleDataInfo("Colin27AAL")
    textPath = _debianFile(info["source"]["path"].replace(".nii.gz", ".nii.txt"))
    rows = [line.split() for line in textPath.read_text().splitlines() if line.strip()]
    assert len(rows) == 116
    segmentationNode = sampledata.loadSampleData(scene, "Colin27AAL")
    labels, ijkToRas, segments = labelmapFromSegmentation(segmentationNode)
    assert [(s.labelValue, s.name) for s in segments] == [(int(value), regionName) for value, regionName, _ in rows]
    byName = {s.name: s.labelValue for s in segments}
    for regionName, sign in (("Precentral_L", -1), ("Precentral_R", 1), ("Occipital_Sup_L", -1)):
        kji = np.argwhere(labels == byName[regionName]).mean(axis=0)
        centreRas = ijkToRas @ np.append(kji[::-1], 1.0)
        assert np.sign(centreRas[0]) == sign, regionName  # RAS x: left hemisphere is negative
    occipital = ijkToRas @ np.append(np.argwhere(labels == byName["Occipital_Sup_L"]).mean(axis=0)[::-1], 1)
    frontal = ijkToRas @ np.append(np.argwhere(labels == byName["Frontal_Sup_L"]).mean(axis=0)[::-1], 1)
    assert frontal[1] > occipital[1] + 50  # anterior is +A


def test_colin27_brain_mask_is_ch2bet_above_zero(scene):
    brain = arrayFromVolume(sampledata.loadSampleData(scene, "Colin27Brain"))
    maskNode = sampledata.loadSampleData(scene, "Colin27BrainMask")
    mask, _, segments = labelmapFromSegmentation(maskNode, sampledata.loadSampleData(scene, "Colin27"))
    assert [s.name for s in segments] == ["Brain"]
    np.testing.assert_array_equal(mask > 0, brain > 0)


def test_kmeans_labels_are_named_tissues_ordered_by_t1_intensity(scene):
    t1 = arrayFromVolume(sampledata.loadSampleData(scene, "KmeansT1"))
    labelNode = sampledata.loadSampleData(scene, "KmeansT1Labels")
    labels = arrayFromVolume(labelNode)
    colorNode = labelNode.GetDisplayNode().GetColorNode()
    names = [colorNode.GetColorName(value) for value in range(7)]
    assert names[4:] == ["Cerebrospinal fluid", "Grey matter", "White matter"]
    means = [t1[labels == value].mean() for value in (4, 5, 6)]
    assert means[0] < means[1] < means[2]
    assert t1[labels == 1].mean() < 5  # air


def test_head_ct_is_in_hounsfield_units_with_an_aligned_bone_mask(scene):
    ctNode = sampledata.loadSampleData(scene, "HeadCT")
    hu = arrayFromVolume(ctNode)
    assert -1030 < np.median(hu[:10, :10, :10]) < -950  # air in the corner
    boneNode = sampledata.loadSampleData(scene, "HeadCTBone")
    bone, ijkToRas, _ = labelmapFromSegmentation(boneNode, ctNode)
    assert np.median(hu[bone > 0]) > 300
    # InVesalius made the mask as a 226 HU threshold: any shift between grids would break this.
    np.testing.assert_array_equal(bone > 0, hu >= 226)
    expected = np.diag([-0.9570312, 0.9570312, 1.5])
    np.testing.assert_allclose(ijkToRasFromVolume(ctNode)[:3, :3], expected, atol=1e-6)
    np.testing.assert_allclose(ijkToRasFromVolume(ctNode) @ [127.5, 127.5, 53.5, 1], [0, 0, 0, 1], atol=1e-6)


@pytest.mark.parametrize("name", MOVING)
def test_known_transform_aligns_the_itk_pair(name):
    info = sampledata.sampleDataInfo(name)
    transform, fixedName, movingName = sampledata.knownTransform(name)
    assert {fixedName, movingName} == {name, info["fixed"]}
    fixed = sitk.Cast(sitk.ReadImage(str(sampledata.sampleDataPath(fixedName))), sitk.sitkFloat32)
    moving = sitk.Cast(sitk.ReadImage(str(sampledata.sampleDataPath(movingName))), sitk.sitkFloat32)
    fixedVoxels = sitk.GetArrayFromImage(fixed)
    candidates = {"known": transform, "identity": sitk.Transform(2, sitk.sitkIdentity)}
    if info["knownTransform"]["type"] != "BSplineTransform":  # a B-spline has no closed-form inverse
        candidates["inverse"] = transform.GetInverse()
    scores = {}
    for label, candidate in candidates.items():
        resampled = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, candidate, sitk.sitkLinear, -1.0))
        scores[label] = _correlation(resampled, fixedVoxels, resampled >= 0)
    assert scores["known"] > 0.995, scores
    assert all(scores["known"] > score + 0.05 for label, score in scores.items() if label != "known"), scores


@pytest.mark.parametrize("name", [n for n in MOVING if "matrix" in sampledata.sampleDataInfo(n)["knownTransform"]])
def test_known_transform_matches_its_affine_form_in_the_manifest(name):
    spec = sampledata.sampleDataInfo(name)["knownTransform"]
    transform = sampledata.knownTransform(name).transform
    for point in ([0.0, 0.0], [220.0, 0.0], [37.5, 201.25]):
        expected = np.asarray(spec["matrix"]) @ point + spec["offsetMm"]
        np.testing.assert_allclose(transform.TransformPoint(point), expected, atol=1e-6)


def test_landmarks_are_ras_points_of_the_itk_text(scene):
    info = sampledata.sampleDataInfo("BrainSliceLandmarksMoving")
    table = np.loadtxt(_debianFile(info["source"]["path"]))
    node = sampledata.loadSampleData(scene, "BrainSliceLandmarksMoving")
    points = np.array([node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())])
    np.testing.assert_allclose(points[:, :2], -table[:, 2:4])  # LPS x, y -> RAS -x, -y
    assert sampledata.knownTransform("BrainProtonDensitySliceShifted13x17y").transform.TransformPoint((0, 0)) == (
        13,
        17,
    )


def test_wrong_checksum_names_the_file_and_both_sums(scene, tmp_path, monkeypatch):
    info = sampledata.sampleDataInfo("Colin27")
    damaged = _copyWithFlippedByte(_debianFile(info["source"]["path"]), tmp_path / "debian" / info["source"]["path"])
    monkeypatch.setenv("MEDAI_DATA_DIR", str(tmp_path))
    actual = hashlib.sha256(damaged.read_bytes()).hexdigest()
    nodesBefore = scene.GetNumberOfNodes()
    with pytest.raises(MedAIInputError) as error:
        sampledata.loadSampleData(scene, "Colin27")
    message = str(error.value)
    assert str(damaged) in message and actual in message and info["source"]["sha256"] in message
    assert scene.GetNumberOfNodes() == nodesBefore


def test_wrong_checksum_of_a_converted_item_writes_nothing(tmp_path):
    info = sampledata.sampleDataInfo("KmeansT1BrainMask")
    _copyWithFlippedByte(_debianFile(info["source"]["path"]), tmp_path / "debian" / info["source"]["path"])
    with pytest.raises(MedAIInputError, match="sha256"):
        sampledata.sampleDataPath("KmeansT1BrainMask", dataDir=tmp_path)
    assert not (tmp_path / "converted").exists()


def test_missing_item_says_how_to_install_it(tmp_path):
    with pytest.raises(MedAIInputError) as error:
        sampledata.sampleDataPath("NucleiImage2D", dataDir=tmp_path)
    assert "stardist" in str(error.value) and ".ci/quickstart setup" in str(error.value)
    assert str(tmp_path / "stardist" / "img2d.tif") in str(error.value)
    with pytest.raises(MedAIInputError, match="no sample data named 'Colin28'.*Colin27"):
        sampledata.sampleDataPath("Colin28")
    with pytest.raises(MedAIInputError, match="has no known transform"):
        sampledata.knownTransform("Colin27")
    with pytest.raises(MedAIInputError, match="needs a vtkMRMLScene"):
        sampledata.loadSampleData(None, "Colin27")


def test_conversion_is_cached_and_redone_when_the_cache_is_damaged(tmp_path):
    source = sampledata.sampleDataDir() / "stardist" / "img2d.tif"
    (tmp_path / "stardist").mkdir()
    shutil.copy(source, tmp_path / "stardist" / "img2d.tif")
    converted = sampledata.sampleDataPath("NucleiImage2D", dataDir=tmp_path)
    assert converted.parent == tmp_path / "converted" and converted.suffix == ".nrrd"
    original = converted.read_bytes()
    stamp = converted.stat().st_mtime_ns
    assert sampledata.sampleDataPath("NucleiImage2D", dataDir=tmp_path) == converted
    assert converted.stat().st_mtime_ns == stamp  # not written again
    converted.write_bytes(original[:-10] + b"0123456789")
    os.utime(converted, ns=(stamp + 10**9, stamp + 10**9))
    sampledata.sampleDataPath("NucleiImage2D", dataDir=tmp_path)
    assert converted.read_bytes() == original
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(converted))), sitk.GetArrayFromImage(sitk.ReadImage(str(source)))
    )
    assert [p.name for p in (tmp_path / "converted").iterdir() if p.name.startswith(".")] == []


def test_checksum_cache_notices_a_changed_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 100)
    first = sampledata.fileSha256(path)
    assert first == hashlib.sha256(b"a" * 100).hexdigest()
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"b" * 100)  # same size
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert sampledata.fileSha256(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_fetch_script_is_quiet_when_everything_is_there():
    script = Path(__file__).resolve().parents[1] / ".ci" / "fetch_sample_data.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
