"""Offscreen pictures drawn by real Slicer slice views (slicer-core displayable managers, EGL/OSMesa)."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from MedAICommonLib import rendering
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.segmentations import SegmentInfo, createSegmentationFromLabelmap
from MedAICommonLib.volumes import createVolumeFromArray

SEGMENT_RGB = (1.0, 0.0, 0.0)


def _rotation(rng, minDegrees=5.0, maxDegrees=30.0) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(minDegrees, maxDegrees))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _grid(shapeKji, spacingMm, centerRas, rotation=None) -> np.ndarray:
    """IJK-to-RAS of a grid whose centre voxel lies at ``centerRas``."""
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = (np.eye(3) if rotation is None else rotation) @ np.diag(spacingMm)
    centerIjk = (np.array(shapeKji[::-1]) - 1) / 2.0
    ijkToRas[:3, 3] = np.asarray(centerRas) - ijkToRas[:3, :3] @ centerIjk
    return ijkToRas


def _rasOfVoxels(shapeKji, ijkToRas) -> np.ndarray:
    k, j, i = np.indices(shapeKji)
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
    return (ijk1 @ ijkToRas.T)[..., :3]


def _phantom(scene, shapeKji=(37, 53, 41), spacingMm=(1.0, 1.0, 1.0), rotation=None, sphereRas=(-12.0, 8.0, 5.0)):
    """A grey ramp volume and a red sphere segment (radius 6 mm) at ``sphereRas`` on the same grid."""
    ijkToRas = _grid(shapeKji, spacingMm, (0.0, 0.0, 0.0), rotation)
    ras = _rasOfVoxels(shapeKji, ijkToRas)
    voxels = (100 + 4 * (ras[..., 1] + 40)).astype(np.int16)  # brighter towards anterior
    volumeNode = createVolumeFromArray(scene, voxels, ijkToRas, "Phantom")
    sphere = (np.linalg.norm(ras - np.asarray(sphereRas), axis=-1) <= 6.0).astype(np.uint8)
    segmentationNode = createSegmentationFromLabelmap(
        scene, sphere, ijkToRas, [SegmentInfo("Sphere", SEGMENT_RGB, 1)], name="PhantomSegmentation"
    )
    return volumeNode, segmentationNode


def _segmentPixels(pixels: np.ndarray) -> np.ndarray:
    """Mask of pixels tinted by the red segment (grey background has R = G = B)."""
    rgb = pixels.astype(int)
    return (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 0] - rgb[..., 2] > 60)


def test_png_has_documented_size_and_is_not_blank(scene, tmp_path):
    volumeNode, segmentationNode = _phantom(scene)
    path = rendering.renderSliceViews(
        scene, volumeNode, tmp_path / "views.png", segmentationNode=segmentationNode, sizePx=200, caption="phantom"
    )
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape == (200 + 18 + 20, 3 * (200 + 4) - 4, 3)
    views = picture[18 : 18 + 200]
    assert views.std() > 20  # a ramp and a sphere, not one flat colour
    assert _segmentPixels(views).sum() > 3 * 200  # the sphere shows in every view

    noCaption = rendering.renderSliceViews(
        scene, volumeNode, tmp_path / "axial.png", orientations=("Axial",), sizePx=64
    )
    assert Image.open(noCaption).size == (64, 64 + 18)


def test_segment_colour_appears_where_the_segment_is(scene):
    sphereRas = np.array([-12.0, 8.0, 5.0])
    volumeNode, segmentationNode = _phantom(scene, sphereRas=sphereRas)
    images = rendering.renderSliceViewImages(scene, volumeNode, segmentationNode, sizePx=256)
    assert [image.orientation for image in images] == ["Axial", "Coronal", "Sagittal"]
    for image in images:
        # Default slices pass through the segment's centre.
        assert image.sliceOffsetMm == pytest.approx(
            sphereRas[{"Axial": 2, "Coronal": 1, "Sagittal": 0}[image.orientation]], abs=1.0
        )
        tinted = _segmentPixels(image.pixels)
        rows, columns = np.nonzero(tinted)
        column, row = image.rasToPixel(sphereRas)
        assert tinted[int(round(row)), int(round(column))], image.orientation
        assert np.mean(columns) == pytest.approx(column, abs=3) and np.mean(rows) == pytest.approx(row, abs=3)
        # 6 mm radius at the view's scale, within a voxel's worth of pixels.
        pixelMm = np.linalg.norm(image.pixelToRas[:3, 0])
        radiusPx = np.sqrt(tinted.sum() / np.pi)
        assert radiusPx * pixelMm == pytest.approx(6.0, abs=1.2)
        # Filled at Slicer's default 2D fill opacity (0.5): the grey beneath still shows.
        red, green, _ = image.pixels[int(round(row)), int(round(column))].astype(int)
        assert 127 <= red < 255 and green > 0


def test_orientation_follows_slicers_radiological_convention(scene):
    """Patient left on the image's right (axial, coronal); anterior up (axial); superior up (coronal, sagittal)."""
    shapeKji = (41, 41, 41)
    ijkToRas = _grid(shapeKji, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ras = _rasOfVoxels(shapeKji, ijkToRas)
    voxels = np.zeros(shapeKji, np.int16)
    voxels[:] = 100
    # One bright block, 15 mm to the patient's left, anterior and superior of the centre.
    voxels[np.all(np.abs(ras - (-15.0, 15.0, 15.0)) <= 3.0, axis=-1)] = 1000
    volumeNode = createVolumeFromArray(scene, voxels, ijkToRas, "Marker")
    images = rendering.renderSliceViewImages(scene, volumeNode, sliceOffsetsRas=(15.0, 15.0, -15.0), sizePx=128)
    for image in images:
        rows, columns = np.nonzero(image.pixels[..., 0] > 200)
        assert rows.size > 0, image.orientation
        right, top = np.mean(columns) > 64, np.mean(rows) < 64
        expected = {"Axial": (True, True), "Coronal": (True, True), "Sagittal": (False, True)}[image.orientation]
        # Sagittal: anterior is on the image's left in Slicer, so the anterior marker is on the left.
        assert (right, top) == expected, image.orientation


def test_oblique_anisotropic_volume_and_parent_transform(scene, rng):
    import slicer

    sphereRas = np.array([10.0, -6.0, 4.0])
    volumeNode, segmentationNode = _phantom(
        scene, shapeKji=(11, 53, 37), spacingMm=(0.7, 0.7, 3.0), rotation=_rotation(rng), sphereRas=sphereRas
    )
    shiftRas = np.array([8.0, 0.0, -5.0])
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Shift")
    matrix = np.eye(4)
    matrix[:3, 3] = shiftRas
    transformNode.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    for node in (volumeNode, segmentationNode):
        node.SetAndObserveTransformNodeID(transformNode.GetID())
    images = rendering.renderSliceViewImages(scene, volumeNode, segmentationNode, sizePx=200)
    for image in images:
        tinted = _segmentPixels(image.pixels)
        rows, columns = np.nonzero(tinted)
        column, row = image.rasToPixel(sphereRas + shiftRas)
        assert rows.size > 50, image.orientation
        assert np.mean(columns) == pytest.approx(column, abs=4) and np.mean(rows) == pytest.approx(row, abs=4)


def test_foreground_volume_is_blended(scene):
    volumeNode, _ = _phantom(scene)
    bright = createVolumeFromArray(
        scene, np.full((37, 53, 41), 500, np.int16), _grid((37, 53, 41), (1, 1, 1), (0, 0, 0)), "Flat"
    )
    plain = rendering.renderSliceViewImages(scene, volumeNode, orientations="Axial", sizePx=64)[0].pixels
    blended = rendering.renderSliceViewImages(
        scene, volumeNode, foregroundVolumeNode=bright, orientations="Axial", sizePx=64, foregroundOpacity=1.0
    )[0].pixels
    inside = plain.std(axis=(0, 1)).sum() > 0
    assert inside and blended.std() < plain.std() / 2  # a flat foreground at full opacity hides the ramp


def test_foreground_colour_table_of_the_users_scene_is_used(scene):
    """A volume shown through its own colour table (here pure red) renders red, not grey or noise."""
    import slicer

    volumeNode, _ = _phantom(scene)
    flat = createVolumeFromArray(
        scene, np.full((37, 53, 41), 1.0, np.float32), _grid((37, 53, 41), (1, 1, 1), (0, 0, 0)), "Flat map"
    )
    red = slicer.vtkMRMLColorTableNode()
    red.SetTypeToUser()
    red.SetNumberOfColors(2)
    red.SetColor(0, "zero", 1.0, 0.0, 0.0, 1.0)
    red.SetColor(1, "one", 1.0, 0.0, 0.0, 1.0)
    scene.AddNode(red)
    flat.CreateDefaultDisplayNodes()
    flat.GetDisplayNode().SetAndObserveColorNodeID(red.GetID())
    pixels = rendering.renderSliceViewImages(
        scene, volumeNode, foregroundVolumeNode=flat, orientations="Axial", sizePx=64, foregroundOpacity=1.0
    )[0].pixels.astype(float)
    middle = pixels[24:40, 24:40]
    assert middle[..., 0].min() > 200 and middle[..., 1:].max() < 30, middle.reshape(-1, 3)[:4]


def test_scene_is_left_as_it_was(scene, tmp_path):
    volumeNode, segmentationNode = _phantom(scene)

    def state():
        nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        references = [
            (node.GetID(), role, node.GetNodeReferenceID(role))
            for node in nodes
            for role in [node.GetNthNodeReferenceRole(r) for r in range(node.GetNumberOfNodeReferenceRoles())]
        ]
        return [node.GetID() for node in nodes], references

    before = state()
    rendering.renderSliceViews(scene, volumeNode, tmp_path / "a.png", segmentationNode=segmentationNode)
    assert state() == before
    assert volumeNode.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeGrey"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"orientations": ("Axial", "Oblique")}, "Orientations"),
        ({"sizePx": 8}, "sizePx"),
        ({"sliceOffsetsRas": (1.0, 2.0)}, "sliceOffsetsRas"),
        ({"sliceOffsetsRas": (1.0, float("nan"), 2.0)}, "sliceOffsetsRas"),
        ({"foregroundOpacity": 1.5}, "foregroundOpacity"),
    ],
)
def test_bad_arguments_are_refused_before_writing(scene, tmp_path, arguments, message):
    volumeNode, _ = _phantom(scene, shapeKji=(9, 9, 9))
    with pytest.raises(MedAIInputError, match=message):
        rendering.renderSliceViews(scene, volumeNode, tmp_path / "bad.png", **arguments)
    assert not (tmp_path / "bad.png").exists()


def test_nodes_from_another_scene_and_wrong_suffix_are_refused(scene, tmp_path):
    import slicer

    volumeNode, _ = _phantom(scene, shapeKji=(9, 9, 9))
    with pytest.raises(MedAIInputError, match="png"):
        rendering.renderSliceViews(scene, volumeNode, tmp_path / "views.jpg")
    with pytest.raises(MedAIInputError, match="background volume"):
        rendering.renderSliceViews(slicer.vtkMRMLScene(), volumeNode, tmp_path / "views.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_torch_llvm_users_still_load_after_rendering(tmp_path):
    """Mesa's llvmpipe loads libLLVM globally; triton (imported by torch and torchvision) crashed after it."""
    script = (
        "import numpy as np, slicer\n"
        "from MedAICommonLib import rendering, volumes\n"
        "scene = slicer.vtkMRMLScene()\n"
        "node = volumes.createVolumeFromArray(scene, np.arange(27, dtype=np.int16).reshape(3, 3, 3), np.eye(4), 'v')\n"
        f"rendering.renderSliceViews(scene, node, {str(tmp_path / 'v.png')!r}, sizePx=32)\n"
        "import triton._C.libtriton\n"
        "print('loaded')\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "loaded" in completed.stdout, completed.stderr[-2000:]


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="OSMesa (libosmesa6) is not installed")
def test_osmesa_takes_over_when_egl_fails(tmp_path):
    """With no EGL vendor library, the same picture comes from OSMesa (both are Mesa's llvmpipe here)."""
    script = (
        "import sys, numpy as np, slicer\n"
        "from MedAICommonLib import offscreen, rendering, volumes\n"
        "scene = slicer.vtkMRMLScene()\n"
        "voxels = (np.arange(9 * 11 * 13).reshape(9, 11, 13) % 97).astype(np.int16)\n"
        "node = volumes.createVolumeFromArray(scene, voxels, np.diag([1.0, 1.5, 2.0, 1.0]), 'v')\n"
        "rendering.renderSliceViews(scene, node, sys.argv[1], sizePx=64)\n"
        "print(offscreen._renderWindowClass.__name__)\n"
    )
    classes = {}
    for name, environment in (("egl", {}), ("fallback", {"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent.json"})):
        completed = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"{name}.png")],
            capture_output=True, text=True, timeout=120, env={**os.environ, **environment},
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-2000:]
        classes[name] = completed.stdout.split()[-1]
    assert classes["fallback"] == "vtkOSOpenGLRenderWindow"
    egl = np.asarray(Image.open(tmp_path / "egl.png")).astype(int)
    fallback = np.asarray(Image.open(tmp_path / "fallback.png")).astype(int)
    assert egl.shape == fallback.shape and np.abs(egl - fallback).mean() < 2


def test_3d_view_shows_segment_surfaces_from_the_requested_side(scene, tmp_path):
    """Seen from the front (Anterior), the patient's left is on the image's right and superior is up."""
    shapeKji = (41, 45, 43)
    ijkToRas = _grid(shapeKji, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ras = _rasOfVoxels(shapeKji, ijkToRas)
    labels = np.zeros(shapeKji, np.uint8)
    labels[np.linalg.norm(ras - (-12.0, 0.0, 10.0), axis=-1) <= 6.0] = 1  # patient left, superior
    labels[np.linalg.norm(ras - (12.0, 5.0, -10.0), axis=-1) <= 6.0] = 2  # patient right, inferior
    segments = [SegmentInfo("Left superior", (1.0, 0.0, 0.0), 1), SegmentInfo("Right inferior", (0.0, 1.0, 0.0), 2)]
    segmentationNode = createSegmentationFromLabelmap(scene, labels, ijkToRas, segments)
    nodesBefore = scene.GetNumberOfNodes()
    path = rendering.render3DView(scene, segmentationNode, tmp_path / "3d.png", sizePx=160)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels.shape == (160 + 18, 160, 3)
    view = pixels[18:]
    red = (view[..., 0] > 60) & (view[..., 0] > 2 * view[..., 1]) & (view[..., 0] > 2 * view[..., 2])
    green = (view[..., 1] > 60) & (view[..., 1] > 2 * view[..., 0]) & (view[..., 1] > 2 * view[..., 2])
    assert red.sum() > 100 and green.sum() > 100
    redRows, redColumns = np.nonzero(red)
    greenRows, greenColumns = np.nonzero(green)
    assert redColumns.mean() > 80 > greenColumns.mean()  # patient left on the image's right
    assert redRows.mean() < 80 < greenRows.mean()  # superior up
    # The caller's segmentation gained no surfaces and the scene no nodes.
    assert not segmentationNode.GetSegmentation().ContainsRepresentation("Closed surface")
    assert scene.GetNumberOfNodes() == nodesBefore


def test_3d_view_refuses_empty_segmentations_and_unknown_directions(scene, tmp_path):
    empty = createSegmentationFromLabelmap(
        scene, np.zeros((5, 6, 7), np.uint8), np.eye(4), [SegmentInfo("Nothing", (1.0, 0.0, 0.0), 1)]
    )
    with pytest.raises(MedAIInputError, match="no voxels"):
        rendering.render3DView(scene, empty, tmp_path / "empty.png")
    with pytest.raises(MedAIInputError, match="viewDirection"):
        rendering.render3DView(scene, empty, tmp_path / "empty.png", viewDirection="Oblique")
    assert list(tmp_path.iterdir()) == []
