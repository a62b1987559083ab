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

Example:
    >>> path = renderSliceViews(scene, headNode, "head.png", segmentationNode=skullNode)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MedAIInputError

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
# Slicer's view names and colours, so that pictures read like the desktop's views.
_VIEW_NAMES = {"Axial": "Red", "Sagittal": "Yellow", "Coronal": "Green"}
_VIEW_COLORS = {"Axial": (241, 128, 105), "Sagittal": (237, 213, 97), "Coronal": (110, 176, 75), "3D": (116, 131, 233)}
# The RAS axis (R=0, A=1, S=2) along each view's normal: its slice offset is that coordinate.
_NORMAL_AXIS = {"Axial": 2, "Coronal": 1, "Sagittal": 0}
_SLICE_DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLModelSliceDisplayableManager")
_THREE_D_DISPLAYABLE_MANAGERS = (
    "vtkMRMLCameraDisplayableManager",
    "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
)
VIEW_DIRECTIONS = ("Anterior", "Posterior", "Left", "Right", "Superior", "Inferior")
_BUNDLED_LLVM_MODULES = ("triton._C.libtriton",)
_HEADER_PX, _GAP_PX, _CAPTION_PX = 18, 4, 20
_renderWindowClass: Any = None


class OffscreenRenderingError(RuntimeError):
    """Neither EGL nor OSMesa could open an OpenGL context (missing system libraries)."""


@dataclass
class SliceViewImage:
    """One rendered slice view.

    Attributes:
        orientation: ``"Axial"``, ``"Coronal"`` or ``"Sagittal"``.
        pixels: RGB image, shape ``(height, width, 3)``, uint8, row 0 at the top.
        pixelToRas: 4x4 matrix mapping ``(column, row, 0, 1)`` (row 0 at the top) to RAS mm.
        sliceOffsetMm: the RAS coordinate of the slice plane (S for axial, A for coronal, R for
            sagittal), millimetres.
    """

    orientation: str
    pixels: np.ndarray
    pixelToRas: np.ndarray
    sliceOffsetMm: float

    def rasToPixel(self, pointRas) -> tuple[float, float]:
        """(column, row) of the image where the RAS point (mm) projects."""
        column, row, _, _ = np.linalg.solve(self.pixelToRas, [*map(float, pointRas), 1.0])
        return float(column), float(row)


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
    windowClass = _offscreenRenderWindowClass()
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
    windowClass = _offscreenRenderWindowClass()
    with _RenderingSession((segmentationNode,), deepCopy=True) as session:
        session.copies[0].CreateClosedSurfaceRepresentation()
        view = session.addView(_ThreeDView(windowClass, session, sizePx))
        session.refreshDisplayableManagers()
        pixels, rightRas, downRas = view.capture(viewDirection)
    outputPath.parent.mkdir(parents=True, exist_ok=True)
    _composePicture([(f"3D  {viewDirection} view", "3D", pixels, rightRas, downRas)], caption).save(outputPath)
    return outputPath


class _OffscreenView:
    """An offscreen render window, its renderer and displayable managers (cf. trame-slicer's AbstractView)."""

    def __init__(self, windowClass, sizePx: int, factory, firstProp=None):
        import slicer
        import vtk

        self.renderWindow = windowClass()
        self.renderWindow.SetOffScreenRendering(1)
        self.renderWindow.SetSize(sizePx, sizePx)
        self.renderer = vtk.vtkRenderer()
        self.renderWindow.AddRenderer(self.renderer)
        if firstProp is not None:
            self.renderer.AddViewProp(firstProp)
        # Displayable managers reach the interactor while they are created.
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.renderWindow)
        self.interactor.Initialize()
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.Initialize(factory, self.renderer)

    def grab(self) -> np.ndarray:
        """Render and return the RGB pixels, row 0 at the top."""
        import vtk
        from vtkmodules.util.numpy_support import vtk_to_numpy

        self.renderWindow.Render()
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(self.renderWindow)
        grabber.SetInputBufferTypeToRGB()
        grabber.ReadFrontBufferOff()
        grabber.Update()
        image = grabber.GetOutput()
        width, height, _ = image.GetDimensions()
        return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3].copy()

    def close(self) -> None:
        self.managers.SetMRMLDisplayableNode(None)
        self.renderWindow.Finalize()


class _SliceView(_OffscreenView):
    """A slice logic with its slice and composite nodes in an offscreen view (cf. trame-slicer's SliceView)."""

    def __init__(self, windowClass, session: _RenderingSession, orientation: str, sizePx: int):
        import slicer
        import vtk

        # The slice logic outputs RGBA already mapped through window/level. Its actor must come
        # first among the renderer's props: a "background" 2D actor added after the segment fill
        # actors hides under them instead of blending.
        self.imageMapper = vtk.vtkImageMapper()
        self.imageMapper.SetColorWindow(255)
        self.imageMapper.SetColorLevel(127.5)
        imageActor = vtk.vtkActor2D()
        imageActor.SetMapper(self.imageMapper)
        imageActor.GetProperty().SetDisplayLocationToBackground()
        factory = session.factory(slicer.vtkMRMLSliceViewDisplayableManagerFactory, _SLICE_DISPLAYABLE_MANAGERS)
        super().__init__(windowClass, sizePx, factory, imageActor)
        self.orientation = orientation
        self.logics = session.applicationLogic.GetSliceLogics()
        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(session.applicationLogic)
        self.logic.SetMRMLScene(session.scene)
        self.logics.AddItem(self.logic)
        self.sliceNode = self.logic.AddSliceNode(f"MedAIRender{_VIEW_NAMES[orientation]}")
        self.sliceNode.SetOrientation(orientation)
        self.managers.SetMRMLDisplayableNode(self.sliceNode)

    def show(self, backgroundVolumeNode, foregroundVolumeNode, foregroundOpacity: float, offsetMm) -> None:
        compositeNode = self.logic.GetSliceCompositeNode()
        compositeNode.SetBackgroundVolumeID(backgroundVolumeNode.GetID())
        compositeNode.SetForegroundVolumeID(foregroundVolumeNode.GetID() if foregroundVolumeNode else None)
        compositeNode.SetForegroundOpacity(foregroundOpacity)
        self.logic.ResizeSliceNode(*self.renderWindow.GetSize())
        self.logic.FitSliceToBackground()
        if offsetMm is None:
            self.logic.SnapSliceOffsetToIJK()
        else:
            # The offset runs along the slice normal, which points to patient left in the sagittal view.
            normalSign = np.sign(self.sliceNode.GetSliceToRAS().GetElement(_NORMAL_AXIS[self.orientation], 2))
            self.logic.SetSliceOffset(float(offsetMm) * normalSign)
        self.imageMapper.SetInputConnection(self.logic.GetImageDataConnection())

    def capture(self) -> SliceViewImage:
        pixels = self.grab()
        # XY has its origin at the bottom-left pixel; images count rows from the top.
        rowFlip = np.array([[1, 0, 0, 0], [0, -1, 0, pixels.shape[0] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        xyToRas = np.array([[self.sliceNode.GetXYToRAS().GetElement(r, c) for c in range(4)] for r in range(4)])
        pixelToRas = xyToRas @ rowFlip
        positionMm = float(pixelToRas[_NORMAL_AXIS[self.orientation], 3])
        return SliceViewImage(self.orientation, pixels, pixelToRas, positionMm)

    def close(self) -> None:
        super().close()
        self.logics.RemoveItem(self.logic)
        self.logic.SetMRMLScene(None)


class _ThreeDView(_OffscreenView):
    """A 3D view logic and its view node in an offscreen view (cf. trame-slicer's ThreeDView)."""

    def __init__(self, windowClass, session: _RenderingSession, sizePx: int):
        import slicer

        factory = session.factory(slicer.vtkMRMLThreeDViewDisplayableManagerFactory, _THREE_D_DISPLAYABLE_MANAGERS)
        super().__init__(windowClass, sizePx, factory)
        self.logics = session.applicationLogic.GetViewLogics()
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(session.applicationLogic)
        self.logic.SetMRMLScene(session.scene)
        self.logics.AddItem(self.logic)
        self.viewNode = self.logic.AddViewNode("MedAIRender3D")
        self.viewNode.SetBoxVisible(False)
        self.viewNode.SetAxisLabelsVisible(False)
        self.viewNode.SetBackgroundColor(0.0, 0.0, 0.0)
        self.viewNode.SetBackgroundColor2(0.0, 0.0, 0.0)
        self.managers.SetMRMLDisplayableNode(self.viewNode)

    def capture(self, viewDirection: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixels seen from ``viewDirection``, and the RAS directions of the screen's right and down."""
        import slicer

        cameraManager = self.managers.GetDisplayableManagerByClassName("vtkMRMLCameraDisplayableManager")
        cameraManager.GetCameraNode().RotateTo(getattr(slicer.vtkMRMLCameraNode, viewDirection))
        self.renderer.ResetCamera()
        camera = self.renderer.GetActiveCamera()
        upRas = np.array(camera.GetViewUp())
        return self.grab(), np.cross(camera.GetDirectionOfProjection(), upRas), -upRas

    def close(self) -> None:
        super().close()
        self.logics.RemoveItem(self.logic)
        self.logic.SetMRMLScene(None)


class _RenderingSession:
    """A private scene holding copies of the shown nodes, with what views need.

    Rendering never touches the caller's scene: shallow copies share the caller's voxel and
    segment data (read only), deep copies (for 3D views, which add surface representations) own
    theirs, and the whole private scene is cleared on exit.
    """

    def __init__(self, shownNodes, deepCopy: bool = False):
        self.shownNodes = shownNodes
        self.deepCopy = deepCopy
        self.views: list[_OffscreenView] = []
        self.factories: list[tuple[Any, Any]] = []

    def __enter__(self):
        import slicer
        import vtk

        self.scene = slicer.vtkMRMLScene()
        self.applicationLogic = slicer.vtkSlicerApplicationLogic()
        self.applicationLogic.SetMRMLScene(self.scene)
        self.applicationLogic.SetSliceLogics(vtk.vtkCollection())
        self.applicationLogic.SetViewLogics(vtk.vtkCollection())
        colorLogic = self.applicationLogic.GetColorLogic()
        colorLogic.SetMRMLScene(self.scene)
        with _quietVtk():
            colorLogic.AddDefaultColorNodes()
        self.copies = [None if n is None else _copyIntoScene(n, self.scene, self.deepCopy) for n in self.shownNodes]
        return self

    def factory(self, factoryClass, managerNames):
        """The (process-wide) displayable manager factory, attached to this session until it exits."""
        factory = factoryClass.GetInstance()
        if all(factory is not known for known, _ in self.factories):
            self.factories.append((factory, factory.GetMRMLApplicationLogic()))
            factory.SetMRMLApplicationLogic(self.applicationLogic)
            for managerName in managerNames:
                if not factory.IsDisplayableManagerRegistered(managerName):
                    factory.RegisterDisplayableManager(managerName)
        return factory

    def addView(self, view: _OffscreenView) -> _OffscreenView:
        self.views.append(view)
        return view

    def refreshDisplayableManagers(self) -> None:
        # Displayable managers only pick up nodes added after them, or all nodes at the end of
        # a batch (as after loading a scene in Slicer), so end an (empty) batch.
        self.scene.StartState(self.scene.BatchProcessState)
        self.scene.EndState(self.scene.BatchProcessState)

    def __exit__(self, *_):
        for view in reversed(self.views):
            view.close()
        self.views.clear()
        self.applicationLogic.GetColorLogic().SetMRMLScene(None)
        self.applicationLogic.SetMRMLScene(None)
        for factory, previousLogic in self.factories:
            factory.SetMRMLApplicationLogic(previousLogic)
        self.scene.Clear(1)
        return False


def _copyIntoScene(node, scene, deepCopy: bool = False):
    """Copy of a displayable node (data shared unless ``deepCopy``), its display node and parent transforms."""
    copy = scene.AddNewNodeByClass(node.GetClassName(), node.GetName())
    copy.CopyContent(node, deepCopy)
    displayNode = node.GetDisplayNode()
    if displayNode is None:
        copy.CreateDefaultDisplayNodes()
    else:
        displayCopy = scene.AddNewNodeByClass(displayNode.GetClassName(), displayNode.GetName())
        displayCopy.CopyContent(displayNode, False)
        colorNode = displayNode.GetColorNode()
        if colorNode is not None and scene.GetNodeByID(colorNode.GetID()) is None:
            colorCopy = scene.AddNewNodeByClass(colorNode.GetClassName(), colorNode.GetName())
            colorCopy.CopyContent(colorNode, False)
            colorNode = colorCopy
        if colorNode is not None:
            displayCopy.SetAndObserveColorNodeID(colorNode.GetID())
        copy.SetAndObserveDisplayNodeID(displayCopy.GetID())
    if node.GetParentTransformNode() is not None:
        copy.SetAndObserveTransformNodeID(_copyIntoScene(node.GetParentTransformNode(), scene, deepCopy).GetID())
    return copy


def _offscreenRenderWindowClass():
    """The render window class that opens an OpenGL context here: EGL, else OSMesa (probed once)."""
    global _renderWindowClass
    if _renderWindowClass is not None:
        return _renderWindowClass
    import vtk
    from vtkmodules import vtkRenderingOpenGL2 as opengl

    _loadBundledLlvmFirst()
    candidates = [vtk.vtkRenderWindow] if os.environ.get("VTK_DEFAULT_OPENGL_WINDOW") else []
    if sys.platform.startswith("linux"):
        candidates += [
            getattr(opengl, name) for name in ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow") if hasattr(opengl, name)
        ]
    else:
        candidates.append(vtk.vtkRenderWindow)
    for windowClass in candidates:
        with _quietVtk():
            window = windowClass()
            window.SetOffScreenRendering(1)
            window.SetSize(8, 8)
            works = bool(window.SupportsOpenGL())
            window.Finalize()
        if works:
            _renderWindowClass = windowClass
            return windowClass
    raise OffscreenRenderingError(
        "No offscreen OpenGL: neither EGL nor OSMesa works. On Debian/Ubuntu install libegl1, libegl-mesa0, "
        "libgl1-mesa-dri (EGL, also without a GPU) or libosmesa6 (OSMesa)."
    )


def _loadBundledLlvmFirst() -> None:
    """Load libraries that bundle their own LLVM before Mesa's software OpenGL loads libLLVM.

    Mesa's llvmpipe (EGL or OSMesa without a GPU) puts libLLVM's symbols in the global scope;
    triton's extension (imported by torch, torchvision and so MONAI) loaded after that binds to
    them and crashes the process. Loaded first, it keeps its own LLVM.
    """
    import importlib
    import importlib.util

    for moduleName in _BUNDLED_LLVM_MODULES:
        try:
            if moduleName.split(".")[0] in sys.modules or importlib.util.find_spec(moduleName.split(".")[0]):
                importlib.import_module(moduleName)
        except Exception:  # noqa: BLE001 - a broken optional package must not stop rendering
            continue


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


def _segmentationCenterRas(segmentationNode) -> np.ndarray | None:
    """Centre (RAS mm) of the voxels that belong to a segment, or None when there are none."""
    import slicer
    import vtk
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if segmentationNode is None:
        return None
    segmentation = segmentationNode.GetSegmentation()
    labelmapName = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    cornersRas = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        labelmap = segment.GetRepresentation(labelmapName)
        if labelmap is None or labelmap.GetPointData().GetScalars() is None:
            continue
        extent = labelmap.GetExtent()
        shapeKji = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(shapeKji)
        inside = np.argwhere(voxels == segment.GetLabelValue())
        if inside.size == 0:
            continue
        imageToWorld = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(imageToWorld)
        for kji in (inside.min(axis=0), inside.max(axis=0)):
            ijk = kji[::-1] + np.array(extent[0::2])
            cornersRas.append(imageToWorld.MultiplyPoint([*map(float, ijk), 1.0])[:3])
    if not cornersRas:
        return None
    if segmentationNode.GetParentTransformNode() is not None:
        toWorld = vtk.vtkGeneralTransform()
        segmentationNode.GetParentTransformNode().GetTransformToWorld(toWorld)
        cornersRas = [toWorld.TransformPoint(point) for point in cornersRas]
    cornersRas = np.array(cornersRas)
    return (cornersRas.min(axis=0) + cornersRas.max(axis=0)) / 2.0


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


@contextlib.contextmanager
def _quietVtk():
    """Keep VTK's probing and colour-table warnings off the console."""
    from vtkmodules.vtkCommonCore import vtkLogger, vtkObject

    previousVerbosity = vtkLogger.GetCurrentVerbosityCutoff()
    previousWarnings = vtkObject.GetGlobalWarningDisplay()
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)
    vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtkObject.SetGlobalWarningDisplay(previousWarnings)
        vtkLogger.SetStderrVerbosity(previousVerbosity)
