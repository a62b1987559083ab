"""Slicer's slice and 3D views set up in a private scene, for :mod:`MedAICommonLib.rendering`.

Package-internal, except :class:`SliceViewImage` (also importable from ``rendering``).

- :class:`_RenderingSession` is a private ``vtkMRMLScene`` holding copies of the shown nodes
  (sharing their voxels, or deep copies for 3D views), the default colour tables and the
  application logic; it is cleared on exit, so the caller's scene never gains view nodes.
- :class:`_SliceView` is a ``vtkMRMLSliceLogic`` with its slice and composite nodes and the
  slice-view displayable managers; :class:`_ThreeDView` a ``vtkMRMLViewLogic`` with its view
  node and the 3D displayable managers. Both render into an offscreen window
  (:class:`~MedAICommonLib.offscreen._OffscreenView`).
- :func:`_segmentationCenterRas` says where a segmentation's voxels are, to aim the views.

Slice views follow Slicer's radiological convention (see :mod:`~MedAICommonLib.rendering`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .offscreen import _OffscreenView

__all__ = ["SliceViewImage"]

# Slicer's view names, so that the private slice nodes are named like the desktop's views.
_VIEW_NAMES = {"Axial": "Red", "Sagittal": "Yellow", "Coronal": "Green"}
# The RAS axis (R=0, A=1, S=2) along each view's normal: its slice offset is that coordinate.
_NORMAL_AXIS = {"Axial": 2, "Coronal": 1, "Sagittal": 0}
_SLICE_DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLModelSliceDisplayableManager")
_THREE_D_DISPLAYABLE_MANAGERS = (
    "vtkMRMLCameraDisplayableManager",
    "vtkMRMLViewDisplayableManager",
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
)


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

        from .nodeio import _quietVtk  # imports slicer: kept out of this module's import (see offscreen)

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
            # Copy, not CopyContent: CopyContent leaves a colour table without its lookup table, and
            # the slice pipeline then maps through uninitialised memory.
            colorCopy.Copy(colorNode)
            colorNode = colorCopy
        if colorNode is not None:
            displayCopy.SetAndObserveColorNodeID(colorNode.GetID())
        copy.SetAndObserveDisplayNodeID(displayCopy.GetID())
    if node.GetParentTransformNode() is not None:
        copy.SetAndObserveTransformNodeID(_copyIntoScene(node.GetParentTransformNode(), scene, deepCopy).GetID())
    return copy


def _segmentationCenterRas(segmentationNode) -> np.ndarray | None:
    """Centre (RAS mm) of the voxels that belong to a segment, or None when there are none.

    Unlike the label map exports of :mod:`~MedAICommonLib.segmentations`, a non-linear parent
    transform is honoured (the segment's extent corners are mapped through it), not refused.
    """
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
