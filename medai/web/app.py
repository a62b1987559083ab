"""The MedAI web app: real Slicer views (trame-slicer) and one side-panel tab per module.

The page has the four familiar Slicer views (axial, coronal, sagittal, 3D), rendered offscreen on
the server (EGL, else OSMesa) and streamed to the browser, and a side panel with the tabs
Segmentation, Registration and Uncertainty. Every tab talks to the same MRML scene; the views use
Slicer's radiological convention (patient left on the screen's right in axial and coronal views).

Example::

    from medai.web import MedAIWebApp
    MedAIWebApp().server.start(host="127.0.0.1", port=8080, open_browser=False)
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["MedAIWebApp", "prepareOffscreenRendering"]

DEFAULT_SAMPLE = "KmeansT1"
PANEL_WIDTH_PX = 420


def prepareOffscreenRendering() -> str:
    """Make every new ``vtkRenderWindow`` an offscreen EGL (else OSMesa) window; returns its class name.

    trame-slicer creates ``vtkRenderWindow()`` objects, which default to X11 windows on Linux; with
    no X server those fail, so VTK is told which class to instantiate before any view exists.

    Raises:
        MedAICommonLib.offscreen.OffscreenRenderingError: neither EGL nor OSMesa works here.
    """
    from MedAICommonLib.offscreen import offscreenRenderWindowClass

    name = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW")
    if not name:
        name = offscreenRenderWindowClass().__name__
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = name
    return name


class MedAIWebApp:
    """The trame server, the Slicer scene and views, and the three module tabs.

    Args:
        server: a trame server (None: a new one named "medai").
        sample: the sample data item shown when the page opens (None: none).
    """

    def __init__(self, server: Any = None, sample: str | None = DEFAULT_SAMPLE) -> None:
        prepareOffscreenRendering()
        from trame.app import get_server
        from trame_slicer import module as trameSlicerModule
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.server = server or get_server("medai", client_type="vue3")
        self.server.enable_module(trameSlicerModule)
        self.state = self.server.state
        self.slicerApp = SlicerApp()
        self.scene = self.slicerApp.scene
        self._isFlat = False
        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.layoutManager = LayoutManager(self.scene, self.slicerApp.view_manager, self.server)
        self.layoutManager.register_layout("MedAI four-up", _fourUpLayout())
        self.layoutManager.set_layout("MedAI four-up")
        self.state.update({"trame__title": "MedAI", "activeTab": "segmentation"})
        self._createTabs()
        self._buildUi()
        for view in self.slicerApp.view_manager.get_slice_views():
            view.set_visible_in_3d(True)
        if sample:
            self.tabs["segmentation"].loadSample(sample)
        self.server.controller.on_client_connected.add(self._fitViewsSoon)
        self.state.change("activeTab")(self._onTabChanged)

    def _onTabChanged(self, activeTab: str = "", **_: Any) -> None:
        """Each tab shows its own volumes and results; the others' overlays are hidden."""
        tab = self.tabs.get(activeTab)
        if tab is None:
            return
        segmentations = self.scene.GetNodesByClass("vtkMRMLSegmentationNode")
        self.showOnly([], [segmentations.GetItemAsObject(i) for i in range(segmentations.GetNumberOfItems())])
        tab.activate()

    def _createTabs(self) -> None:
        from .registrationtab import RegistrationTab
        from .segmentationtab import SegmentationTab
        from .uncertaintytab import UncertaintyTab

        self.tabs = {
            "segmentation": SegmentationTab(self),
            "registration": RegistrationTab(self),
            "uncertainty": UncertaintyTab(self),
        }

    def _buildUi(self) -> None:
        from trame.ui.vuetify3 import VAppLayout
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        from .widgets import testAttrs

        with VAppLayout(self.server, theme="dark") as self.ui:
            with v.VAppBar(density="compact"):
                v.VToolbarTitle("MedAI", classes="text-h6")
                v.VBtn("Fit views", size="small", prepend_icon="mdi-fit-to-screen", click=self.fitViews, classes="mr-2")
                html.Div(
                    "Segmentation, registration and uncertainty on Slicer views",
                    classes="text-caption text-grey mr-4",
                )
            with v.VNavigationDrawer(permanent=True, location="left", width=PANEL_WIDTH_PX):
                with v.VTabs(v_model=("activeTab",), density="compact", grow=True):
                    for key, tab in self.tabs.items():
                        v.VTab(
                            tab.title, value=key, min_width=0, classes="px-1 text-caption", **testAttrs(f"tab-{key}")
                        )
                with v.VWindow(v_model=("activeTab",)):
                    for key, tab in self.tabs.items():
                        with v.VWindowItem(value=key, classes="pa-3"):
                            tab.buildUi()
            with v.VMain(), html.Div(classes="d-flex flex-row fill-height", style="height: calc(100vh - 48px);"):
                self.layoutManager.initialize_layout_grid(self.ui)

    # --- what the views show -------------------------------------------------------------------------

    @property
    def sliceViews(self) -> list:
        return self.slicerApp.view_manager.get_slice_views()

    def showVolume(
        self, volumeNode: Any, foregroundNode: Any = None, foregroundOpacity: float = 0.5, fit: bool = True
    ) -> None:
        """Show a volume in the slice views' background (and another in the foreground), fitted to it."""
        display = self.slicerApp.display_manager
        display.show_volume_in_slice_background(volumeNode)
        display.show_volume_in_slice_foreground(foregroundNode)
        for view in self.sliceViews:
            view.set_foreground_opacity(foregroundOpacity if foregroundNode is not None else 0.0)
        self._isFlat = volumeNode is not None and volumeNode.GetImageData().GetDimensions()[2] == 1
        if fit:
            self.fitViews()

    def fitViews(self) -> None:
        """Fit every view to the shown volume (after the browser has given the views their size)."""
        for view in self.slicerApp.view_manager.get_views():
            self._fitView(view)

    def _fitView(self, view: Any) -> None:
        from trame_slicer.views import SliceView, ViewDirection

        view.reset_view()
        if isinstance(view, SliceView):
            # Room for the slice slider drawn over the bottom of the view.
            view.zoom(-0.1)
            return
        view.rotate_to_view_direction(ViewDirection.INFERIOR if self._isFlat else ViewDirection.ANTERIOR)
        if not self._isFlat:
            # Seen a little from the left and above, the three slice planes and surfaces read as 3D.
            camera = view.get_camera_node().GetCamera()
            camera.Azimuth(-30)
            camera.Elevation(20)
            camera.OrthogonalizeViewUp()
        view.reset_focal_point()
        view.schedule_render()

    def _fitViewsSoon(self, *_: Any) -> None:
        import asyncio

        from trame.app import asynchronous

        async def fitWhenSized() -> None:
            # The views learn their size from the page some time after it connects (seconds under
            # load); each view is fitted again whenever its size changed, for the first half minute.
            fittedSizes: dict[int, tuple] = {}
            for _attempt in range(60):
                await asyncio.sleep(0.5)
                with self.state:
                    for view in self.slicerApp.view_manager.get_views():
                        size = tuple(view.render_window().GetSize())
                        if fittedSizes.get(id(view)) != size:
                            fittedSizes[id(view)] = size
                            self._fitView(view)

        asynchronous.create_task(fitWhenSized())

    def setForeground(self, foregroundNode: Any, opacity: float = 0.5) -> None:
        """Blend a volume over the background without moving the views."""
        self.slicerApp.display_manager.show_volume_in_slice_foreground(foregroundNode)
        for view in self.sliceViews:
            view.set_foreground_opacity(opacity if foregroundNode is not None else 0.0)
            view.schedule_render()

    def showOnly(self, nodes: list, hidden: list) -> None:
        """Make the displayable nodes in ``nodes`` visible and those in ``hidden`` invisible."""
        for node, visible in [(n, True) for n in nodes] + [(n, False) for n in hidden]:
            if node is not None and node.GetScene() is self.scene and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetVisibility(visible)

    def removeNodes(self, nodes: list) -> None:
        """Remove nodes (and their display and storage nodes) that are still in the scene."""
        for node in nodes:
            if node is not None and node.GetScene() is self.scene:
                self.scene.RemoveNode(node)

    def attachment(self, content: bytes) -> Any:
        """Register bytes that the page downloads with ``utils.download``."""
        return self.server.protocol.addAttachment(content)


def _fourUpLayout():
    """Axial and 3D on top, coronal and sagittal below: Slicer's "Four-Up" arrangement."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    top = Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()])
    bottom = Layout(
        LayoutDirection.Horizontal, [ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()]
    )
    return Layout(LayoutDirection.Vertical, [top, bottom])
