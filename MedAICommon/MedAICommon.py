"""MedAICommon: the hidden module that brings MedAICommonLib into Slicer.

It has no panel. It lists MedAI's sample data in the Sample Data module (category "MedAI") once the
application has started, and holds what the MedAI module panels share on the Qt side (Qt code cannot
live in MedAICommonLib, which runs without Qt): :class:`MedAIJobRunner`, which drives background jobs,
and :class:`MedAIPanelMixin`, the parameter-node binding, scene-close handling and Apply/Cancel buttons.
"""

import os

import qt
import slicer
import vtk
from MedAICommonDependencies import ensureMedAIDependencies
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

SAMPLE_DATA_CATEGORY = "MedAI"

#
# MedAICommon
#


class MedAICommon(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedAI Common")
        self.parent.categories = ["MedAI"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedAI contributors"]
        self.parent.helpText = _("""
Shared code of the MedAI modules: the geometry bridge between MRML, numpy, SimpleITK and MONAI, scene input and
output, background jobs, devices, the model registry and the sample data. It has no panel of its own.
See <a href="https://github.com/medai-slicer/SlicerMedAI">the MedAI documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Built on 3D Slicer, MONAI, PyTorch and SimpleITK. Sample data come from nilearn (MNI152), mricron (Colin27),
the ITK examples, InVesalius, StarDist and pydicom-data; see each data set's licence in the documentation.
""")
        self.parent.hidden = True
        # No panel: Slicer would otherwise look for a MedAICommonWidget class.
        self.parent.widgetRepresentationCreationEnabled = False

        # Additional initialization step after application startup is complete
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Register sample data sets in Sample Data module
#


def registerSampleData():
    """Called once the application has started: lists MedAI's sample data in the Sample Data module.

    Each item gets a custom downloader: its button loads the item through MedAICommonLib, which finds
    the local file (nothing is downloaded), checks its sha256, converts what Slicer cannot read as is
    (the InVesalius head CT, TIFF and PNG images, label images that become segmentations) and names
    segments and labels. Resolving files here instead, as ``file://`` URIs, would hash every file and
    run every conversion at each start. From scripts, use ``MedAICommonLogic().loadSampleData(name)``.
    """
    import SampleData

    from MedAICommonLib import sampledata

    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer 5.9 and later
        logic.registerCustomSampleDataCategory(SAMPLE_DATA_CATEGORY, title=_("MedAI"))
    thumbnail = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MedAICommon.png")
    for name in sampledata.sampleDataNames():
        logic.registerCustomSampleDataSource(
            category=SAMPLE_DATA_CATEGORY,
            sampleName=name,
            thumbnailFileName=thumbnail,
            # Nothing for Slicer to fetch: the custom downloader does the loading.
            uris=[],
            fileNames=[],
            customDownloader=_loadSampleFromButton,
        )


def _loadSampleFromButton(source):
    """Called when the user clicks a MedAI sample in the Sample Data module."""
    with slicer.util.tryWithErrorDisplay(
        _("Failed to load sample data {name}.").format(name=source.sampleName), waitCursor=True
    ):
        MedAICommonLogic().loadSampleData(source.sampleName)


#
# MedAIJobRunner
#


class MedAIJobRunner:
    """Runs one background job for a module panel without freezing it.

    The job is a :class:`MedAICommonLib.jobs.WorkerProcess` (a Python process) or a
    :class:`MedAICommonLib.threadjob.ThreadJob` (a thread doing numpy work), polled by a ``QTimer``.
    While it runs, its button reads "Cancel" (a process tree is killed, a thread stops at its next
    cancel-token check), the progress bar and status label follow it. ``onEnded(status)`` gets the
    final ``WorkerStatus`` before the worker's scratch folder is removed.
    """

    POLL_INTERVAL_MS = 100

    def __init__(self, progressBar, statusLabel, onEnded):
        self._progressBar = progressBar
        self._statusLabel = statusLabel
        self._onEnded = onEnded
        self._worker = self._button = None
        self._cancelling = False
        self._buttonText = self._buttonToolTip = ""
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)
        self._progressBar.visible = False

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self._worker is not None

    @property
    def button(self):
        """The button that started the running job (now its Cancel button), or None."""
        return self._button if self._worker is not None else None

    def start(self, worker, button) -> None:
        """Start ``worker`` and turn ``button`` into its Cancel button."""
        if self.running:
            raise RuntimeError("A MedAI job is already running in this panel.")
        worker.start()
        self._worker, self._button, self._cancelling = worker, button, False
        self._buttonText, self._buttonToolTip = button.text, button.toolTip
        button.text = _("Cancel")
        button.toolTip = _("Stop the running job; the scene is left as it was.")
        button.enabled = True
        self._progressBar.value = 0
        self._progressBar.visible = True
        self._statusLabel.text = _("Starting...")
        self._timer.start()

    def cancel(self) -> None:
        """Stop the running job (a thread job ends at its next check; until then the job still runs)."""
        if self._worker is not None:
            self._worker.cancel()
            self._cancelling = True
            self._statusLabel.text = _("Cancelling...")
            self._poll()

    def close(self) -> None:
        """Stop the timer and any running job (the panel is being destroyed)."""
        self._timer.stop()
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _poll(self) -> None:
        """Called by the timer: shows the job's progress and ends it when the worker is done."""
        if self._worker is None:
            return
        status = self._worker.poll()
        self._progressBar.value = round(100 * status.fraction)
        if status.message and not self._cancelling:
            self._statusLabel.text = status.message
        if status.finished:
            self._end(status)

    def _end(self, status) -> None:
        from MedAICommonLib.jobs import WorkerState

        self._timer.stop()
        worker, self._worker = self._worker, None
        self._button.text, self._button.toolTip = self._buttonText, self._buttonToolTip
        self._progressBar.visible = False
        if status.state == WorkerState.CANCELLED:
            self._statusLabel.text = _("Cancelled; nothing was added to the scene.")
        elif status.state == WorkerState.FAILED:
            self._statusLabel.text = _("Failed: {message}").format(message=status.errorMessage)
        try:
            self._onEnded(status)
        finally:
            worker.close()


#
# MedAIPanelMixin and MedAILogicMixin
#


class MedAIPanelMixin(VTKObservationMixin):
    """What every MedAI panel's widget does alike: put in a ScriptedLoadableModuleWidget's bases after it.

    Loads the panel, binds the parameter node (each .ui widget names its field in ``SlicerParameterName``),
    lets go of it when the scene closes, runs one job at a time through :class:`MedAIJobRunner`. The widget's
    lifecycle methods call the ``*Panel`` methods; it overrides :meth:`onParameterNodeModified` (calling
    :meth:`updateButtons`) and :meth:`onJobEnded`; its logic has ``getParameterNode`` and ``whyCannotRun``.
    """

    def initPanel(self) -> None:
        """Call from the widget's ``__init__``, after ScriptedLoadableModuleWidget's."""
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._jobRunner = None

    def setupPanel(self, uiPath: str, logic) -> None:
        """Call from ``setup``: loads ``uiPath``, creates ``self.ui``, the job runner and the scene observers."""
        uiWidget = slicer.util.loadUI(uiPath)
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level qMRMLWidget's mrmlSceneChanged to each node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self._jobRunner = MedAIJobRunner(self.ui.progressBar, self.ui.statusLabel, self.onJobEnded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanupPanel(self) -> None:
        """Call from ``cleanup``: stops any job and every observer."""
        self._jobRunner.close()
        self.removeObservers()

    def exitPanel(self) -> None:
        """Call from ``exit``: the panel stops following the parameter node until it is entered again."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def sceneStartClosePanel(self) -> None:
        """Call from ``onSceneStartClose``: a running job would write into nodes about to vanish."""
        self._jobRunner.cancel()
        self.setParameterNode(None)

    def sceneEndClosePanel(self) -> None:
        """Call from ``onSceneEndClose``."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Makes sure a parameter node exists and is shown; picks the first volume as input if none is."""
        self.setParameterNode(self.logic.getParameterNode())
        if hasattr(self._parameterNode, "inputVolume") and not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Binds the panel's widgets to ``inputParameterNode`` (None: to nothing) and observes it."""
        if self._parameterNode:
            self.exitPanel()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Called after every parameter change; override to show and hide settings and update the buttons."""

    def onJobEnded(self, status) -> None:
        """Called when a background job ends; override to put its results into the scene."""

    def updateButtons(self, buttons) -> None:
        """Enable each ``(button, task, readyToolTip)`` or say why not; during a job only its Cancel is enabled."""
        for button, task, readyToolTip in buttons:
            if self._jobRunner.running:
                button.enabled = self._jobRunner.button is button
                continue
            reason = self.logic.whyCannotRun(self._parameterNode, task)
            button.enabled = not reason
            button.toolTip = reason or readyToolTip

    def startOrCancel(self, button, startJob, what: str) -> None:
        """Start the job that ``startJob()`` returns, with ``button`` as its Cancel; cancel it if one runs."""
        if self._jobRunner.running:
            self._jobRunner.cancel()
            return
        if ensureMedAIDependencies():  # installs what is missing at first use, after asking; False: declined
            with slicer.util.tryWithErrorDisplay(_("Failed to start the {what}.").format(what=what), waitCursor=True):
                self._jobRunner.start(startJob(), button)
        self.onParameterNodeModified()


class MedAILogicMixin:
    """What every MedAI module logic does alike: put in a ScriptedLoadableModuleLogic's bases after it.

    ``PENDING_ISSUES``: method or task -> the issue that brings it. ``extra*`` keep on the parameter node
    (saved with the scene) what no typed field fits: a segment ID, a node of one of several classes.
    """

    PENDING_ISSUES = {}

    def pendingMessage(self, methodOrTask: str) -> str:
        """Which issue brings a method or task; empty once it is available."""
        issue = self.PENDING_ISSUES.get(methodOrTask)
        if issue is None:
            return ""
        return _("The {name} algorithm arrives with issue #{issue}; nothing is computed yet.").format(
            name=methodOrTask, issue=issue
        )

    def extraParameter(self, key: str):
        """The text kept under ``key``, or None."""
        return ScriptedLoadableModuleLogic.getParameterNode(self).GetParameter(key) or None

    def setExtraParameter(self, key: str, value) -> None:
        ScriptedLoadableModuleLogic.getParameterNode(self).SetParameter(key, value or "")

    def extraNode(self, role: str):
        """The node referenced under ``role``, or None."""
        return ScriptedLoadableModuleLogic.getParameterNode(self).GetNodeReference(role)

    def setExtraNode(self, role: str, node) -> None:
        ScriptedLoadableModuleLogic.getParameterNode(self).SetNodeReferenceID(role, node.GetID() if node else None)


#
# MedAICommonLogic
#


class MedAICommonLogic(ScriptedLoadableModuleLogic):
    """Slicer-side helpers over MedAICommonLib that need the application (views, the global scene).

    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def loadSampleData(self, name: str, showResult: bool = True):
        """Load a MedAI sample by name into ``slicer.mrmlScene`` (checksum checked) and show it.

        Returns:
            the new node (a scalar or label map volume, or a segmentation).
        Raises:
            MedAICommonLib.errors.MedAIInputError: unknown name, or the file is missing or corrupt.
        """
        from MedAICommonLib import sampledata

        node = sampledata.loadSampleData(slicer.mrmlScene, name)
        node.CreateDefaultDisplayNodes()
        if showResult:
            if node.IsA("vtkMRMLLabelMapVolumeNode"):
                slicer.util.setSliceViewerLayers(label=node)
            elif node.IsA("vtkMRMLScalarVolumeNode"):
                slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node


#
# MedAICommonTest
#


class MedAICommonTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (the pytest suite covers MedAICommonLib without the application).

    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def setUp(self):
        """Called before each test: starts from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Called by the Reload and Test button and by ctest."""
        self.setUp()
        self.test_SampleDataRegistered()
        self.setUp()
        self.test_SampleVolumeGeometry()

    def test_SampleDataRegistered(self):
        """Every MedAI sample is listed once under the MedAI category of Sample Data, even if registered twice."""
        import SampleData

        from MedAICommonLib import sampledata

        registerSampleData()
        registerSampleData()
        registered = [
            s.sampleName for s in SampleData.SampleDataLogic.sampleDataSourcesByCategory(SAMPLE_DATA_CATEGORY)
        ]
        self.assertEqual(registered, sampledata.sampleDataNames())

    def test_SampleVolumeGeometry(self):
        """The small anisotropic 3D T1 of the ITK examples loads with the size and spacing its manifest documents."""
        from MedAICommonLib import sampledata

        info = sampledata.sampleDataInfo("KmeansT1")
        volumeNode = MedAICommonLogic().loadSampleData("KmeansT1", showResult=False)
        self.assertEqual(list(volumeNode.GetImageData().GetDimensions()), info["size"])
        for spacing, expected in zip(volumeNode.GetSpacing(), info["spacingMm"]):
            self.assertAlmostEqual(spacing, expected, places=4)
