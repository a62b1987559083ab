"""Pictures of results drawn by real Slicer views, offscreen, without Qt or an X server.

Each view is a ``vtkMRMLSliceLogic`` with its slice and composite nodes and the slice-view
displayable managers of slicer-core (segmentations as Slicer draws them: filled with the
display node's 2D fill opacity and outlined), rendered into an offscreen ``vtkRenderWindow``:
EGL first (a GPU, or Mesa's llvmpipe software driver without one), OSMesa when EGL fails.
``VTK_DEFAULT_OPENGL_WINDOW`` overrides the choice.

:func:`render3DView` shows a segmentation's surfaces the same way, with a ``vtkMRMLViewLogic``
and the 3D displayable managers, from a chosen side (``"Anterior"`` faces the patient).

Slice views follow Slicer's radiological convention: in the axial and coronal views the patient's
left is on the image's right, anterior is up in the axial view and superior is up in the
coronal and sagittal views. Volumes use their display node's window/level (automatic unless
the caller set one).

The caller's scene is never modified: the shown nodes are copied (sharing their voxels) into a
private scene that holds the views' slice, composite and slice-model nodes, the default colour
tables and the application logic, and that scene is cleared in ``finally``. A scene saved
afterwards therefore holds no view nodes, and nodes without display nodes are shown with
default ones without getting them.

This file checks the arguments and composes the PNG; the offscreen OpenGL window is set up in
:mod:`~MedAICommonLib.offscreen`, the private scene and the views in :mod:`~MedAICommonLib.sliceviews`.

Example:
    >>> path = renderSliceViews(scene, headNode, "head.png", segmentationNode=skullNode)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MedAIInputError
from .offscreen import OffscreenRenderingError, offscreenRenderWindowClass
from .sliceviews import (
    _NORMAL_AXIS,
    SliceViewImage,
    _RenderingSession,
    _segmentationCenterRas,
    _SliceView,
    _ThreeDView,
)

__all__ = [
    "ORIENTATIONS",
    "VIEW_DIRECTIONS",
    "SliceViewImage",
    "OffscreenRenderingError",
    "renderSliceViewImages",
    "renderSliceViews",
    "render3DView",
]

ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
VIEW_DIRECTIONS = ("Anterior", "Posterior", "Left", "Right", "Superior", "Inferior")
# Slicer's view colours, so that pictures read like the desktop's views.
_VIEW_COLORS = {"Axial": (241, 128, 105), "Sagittal": (237, 213, 97), "Coronal": (110, 176, 75), "3D": (116, 131, 233)}
_HEADER_PX, _GAP_PX, _CAPTION_PX = 18, 4, 20


def renderSliceViews(
    scene: Any,
    backgroundVolumeNode: Any,
    outputPath,
    segmentationNode: Any = None,
    foregroundVolumeNode: Any = None,
    orientations=ORIENTATIONS,
    sizePx: int = 320,
    sliceOffsetsRas=None,
    foregroundOpacity: float = 0.5,
    caption: str | None = None,
) -> Path:
    """Render slice views side by side into one PNG, titled like Slicer's views.

    Args: as :func:`renderSliceViewImages`, plus
        outputPath: the ``.png`` file to write (its folder is created).
        caption: one line written under the views; None writes none.

    Returns:
        The path of the PNG, ``len(orientations) * (sizePx + 4) - 4`` pixels wide and
        ``sizePx + 18`` (``+ 20`` with a caption) pixels high.

    Raises:
        MedAIInputError: bad arguments, before anything is created.
        OffscreenRenderingError: no OpenGL context could be opened.
    """
    outputPath = _checkPngPath(outputPath)
    images = renderSliceViewImages(
        scene, backgroundVolumeNode, segmentationNode, foregroundVolumeNode, orientations, sizePx,
        sliceOffsetsRas, foregroundOpacity,
    )  # fmt: skip
    outputPath.parent.mkdir(parents=True, exist_ok=True)
    panels = [
        (f"{i.orientation}  {'RAS'[_NORMAL_AXIS[i.orientation]]} {i.sliceOffsetMm:.1f} mm", i.orientation, i.pixels,
         i.pixelToRas[:3, 0], i.pixelToRas[:3, 1])
        for i in images
    ]  # fmt: skip
    _composePicture(panels, caption).save(outputPath)
    return outputPath


def renderSliceViewImages(
    scene: Any,
    backgroundVolumeNode: Any,
    segmentationNode: Any = None,
    foregroundVolumeNode: Any = None,
    orientations=ORIENTATIONS,
    sizePx: int = 320,
    sliceOffsetsRas=None,
    foregroundOpacity: float = 0.5,
) -> list[SliceViewImage]:
    """Render one square slice view per orientation and return their pixels and geometry.

    Args:
        scene: the ``vtkMRMLScene`` holding the nodes; it is left as it was.
        backgroundVolumeNode: scalar volume shown in grey with its window/level; each view is
            fitted to it.
        segmentationNode: segmentation drawn over it (segment colours, fill and outline), or None.
        foregroundVolumeNode: volume blended over the background, or None.
        orientations: some of ``"Axial"``, ``"Coronal"``, ``"Sagittal"``, left to right.
        sizePx: width and height of each view in pixels (32-4096).
        sliceOffsetsRas: one slice position per orientation, the RAS coordinate of its plane in
            mm (S for axial, A for coronal, R for sagittal); None: through the centre of the
            segmentation's non-empty extent if there is one, else the background's centre
            (snapped to its voxels).
        foregroundOpacity: 0-1 blend of the foreground volume.

    Returns:
        One :class:`SliceViewImage` per orientation.

    Raises:
        MedAIInputError: bad arguments, before anything is created.
        OffscreenRenderingError: no OpenGL context could be opened.
    """
    orientations = _checkArguments(
        scene, backgroundVolumeNode, segmentationNode, foregroundVolumeNode, orientations, sizePx, sliceOffsetsRas,
        foregroundOpacity,
    )  # fmt: skip
    windowClass = offscreenRenderWindowClass()
    if sliceOffsetsRas is None:
        centerRas = _segmentationCenterRas(segmentationNode)
        sliceOffsetsRas = [None if centerRas is None else centerRas[_NORMAL_AXIS[o]] for o in orientations]
    with _RenderingSession((backgroundVolumeNode, segmentationNode, foregroundVolumeNode)) as session:
        backgroundCopy, _, foregroundCopy = session.copies
        views = [session.addView(_SliceView(windowClass, session, orientation, sizePx)) for orientation in orientations]
        for view, offsetMm in zip(views, sliceOffsetsRas):
            view.show(backgroundCopy, foregroundCopy, foregroundOpacity, offsetMm)
        session.refreshDisplayableManagers()
        return [view.capture() for view in views]


def render3DView(
    scene: Any,
    segmentationNode: Any,
    outputPath,
    viewDirection: str = "Anterior",
    sizePx: int = 480,
    caption: str | None = None,
) -> Path:
    """Render a segmentation's surfaces as Slicer's 3D view shows them, into a PNG.

    The surfaces are made by Slicer's closed-surface conversion (with its default smoothing) on
    a copy of the segmentation, so the caller's node gains no representation.

    Args:
        scene: the ``vtkMRMLScene`` holding the segmentation; it is left as it was.
        segmentationNode: the ``vtkMRMLSegmentationNode`` to show, in its segment colours.
        outputPath: the ``.png`` file to write (its folder is created).
        viewDirection: where the camera looks from, one of ``VIEW_DIRECTIONS``; ``"Anterior"``
            faces the patient, whose right is then on the image's left.
        sizePx: width and height of the view in pixels (32-4096).
        caption: one line written under the view; None writes none.

    Returns:
        The path of the PNG, ``sizePx`` wide and ``sizePx + 18`` (``+ 20`` with a caption) high.

    Raises:
        MedAIInputError: bad arguments or an empty segmentation, before anything is written.
        OffscreenRenderingError: no OpenGL context could be opened.
    """
    import slicer

    outputPath = _checkPngPath(outputPath)
    if not isinstance(segmentationNode, slicer.vtkMRMLSegmentationNode) or segmentationNode.GetScene() is not scene:
        raise MedAIInputError("The segmentation must be a vtkMRMLSegmentationNode in the scene being rendered.")
    if viewDirection not in VIEW_DIRECTIONS:
        raise MedAIInputError(f"viewDirection must be one of {', '.join(VIEW_DIRECTIONS)}, got {viewDirection!r}.")
    _checkSize(sizePx)
    if _segmentationCenterRas(segmentationNode) is None:
        raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no voxels to show in 3D.")
    windowClass = offscreenRenderWindowClass()
    with _RenderingSession((segmentationNode,), deepCopy=True) as session:
        session.copies[0].CreateClosedSurfaceRepresentation()
        view = session.addView(_ThreeDView(windowClass, session, sizePx))
        session.refreshDisplayableManagers()
        pixels, rightRas, downRas = view.capture(viewDirection)
    outputPath.parent.mkdir(parents=True, exist_ok=True)
    _composePicture([(f"3D  {viewDirection} view", "3D", pixels, rightRas, downRas)], caption).save(outputPath)
    return outputPath


def _checkArguments(scene, background, segmentation, foreground, orientations, sizePx, offsets, opacity) -> tuple:
    import slicer

    if not isinstance(scene, slicer.vtkMRMLScene):
        raise MedAIInputError("Expected a vtkMRMLScene to render from.")
    for node, what, nodeClass in (
        (background, "background volume", slicer.vtkMRMLScalarVolumeNode),
        (foreground, "foreground volume", slicer.vtkMRMLScalarVolumeNode),
        (segmentation, "segmentation", slicer.vtkMRMLSegmentationNode),
    ):
        if node is None and what != "background volume":
            continue
        if not isinstance(node, nodeClass) or node.GetScene() is not scene:
            raise MedAIInputError(f"The {what} must be a {nodeClass.__name__} in the scene being rendered.")
    if background.GetImageData() is None:
        raise MedAIInputError(f"The background volume '{background.GetName()}' holds no image.")
    orientations = (orientations,) if isinstance(orientations, str) else tuple(orientations)
    if not orientations or any(o not in ORIENTATIONS for o in orientations):
        raise MedAIInputError(f"Orientations must be some of {', '.join(ORIENTATIONS)}, got {orientations}.")
    _checkSize(sizePx)
    if offsets is not None and (
        len(offsets) != len(orientations) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in offsets)
    ):
        raise MedAIInputError(f"sliceOffsetsRas needs one finite offset in mm per orientation, got {offsets!r}.")
    if not 0.0 <= float(opacity) <= 1.0:
        raise MedAIInputError(f"foregroundOpacity must be in 0-1, got {opacity}.")
    return orientations


def _checkPngPath(outputPath) -> Path:
    outputPath = Path(outputPath)
    if outputPath.suffix.lower() != ".png":
        raise MedAIInputError(f"The picture must be a .png file, got '{outputPath}'.")
    return outputPath


def _checkSize(sizePx) -> None:
    if isinstance(sizePx, bool) or not isinstance(sizePx, (int, np.integer)) or not 32 <= sizePx <= 4096:
        raise MedAIInputError(f"sizePx must be an integer from 32 to 4096, got {sizePx!r}.")


def _composePicture(panels: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]], caption: str | None):
    """Views side by side on black, each under a title bar in its Slicer colour, then the caption.

    Each panel is ``(title, colour key, pixels, screen-right RAS vector, screen-down RAS vector)``;
    the edges are labelled with the patient directions those vectors point to.
    """
    from PIL import Image, ImageDraw, ImageFont

    sizePx = panels[0][2].shape[0]
    width = len(panels) * (sizePx + _GAP_PX) - _GAP_PX
    height = _HEADER_PX + sizePx + (_CAPTION_PX if caption else 0)
    picture = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=12)
    for index, (title, colorKey, pixels, rightRas, downRas) in enumerate(panels):
        left = index * (sizePx + _GAP_PX)
        picture.paste(Image.fromarray(pixels), (left, _HEADER_PX))
        draw.rectangle([left, 0, left + sizePx - 1, _HEADER_PX - 2], fill=_VIEW_COLORS[colorKey])
        draw.text((left + 4, 2), title, fill=(0, 0, 0), font=font)
        for (x, y), direction, anchor in (
            ((left + 3, _HEADER_PX + sizePx // 2), -np.asarray(rightRas), "lm"),
            ((left + sizePx - 3, _HEADER_PX + sizePx // 2), rightRas, "rm"),
            ((left + sizePx // 2, _HEADER_PX + 3), -np.asarray(downRas), "mt"),
        ):
            draw.text((x, y), _directionLetter(direction), fill=(255, 255, 0), font=font, anchor=anchor)
    if caption:
        draw.text((4, _HEADER_PX + sizePx + 3), caption, fill=(230, 230, 230), font=font)
    return picture


def _directionLetter(directionRas) -> str:
    """The patient direction (R, L, A, P, S, I) closest to a RAS vector."""
    axis = int(np.argmax(np.abs(directionRas)))
    return ("RL", "AP", "SI")[axis][0 if directionRas[axis] > 0 else 1]
