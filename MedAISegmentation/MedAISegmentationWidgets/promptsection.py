"""The Prompt section of the Segmentation panel (Qt): place buttons, negative points, background embedding, undo.

- The ROI and point-list selectors each have a place button (``qSlicerMarkupsPlaceWidget``); while
  "Negative points" is checked, each point placed gets a label starting with ``-`` (negative for the Lib).
- When a red, yellow or green slice view shows another slice of the input (its slice node is modified),
  the embedding of that slice is computed in a background thread through the logic's ``PromptSession``,
  so that a prompt placed there only runs the fast decoder; the state shows beside "Embedding".
- "Segment on change" segments again when a box or point is placed or moved; "Undo last prompt" restores
  the segmentation as it was before the last prompted result (``PromptUndo``).
"""

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.jobs import WorkerState
from MedAICommonLib.threadjob import ThreadJob

__all__ = ["PromptSection"]

SLICE_NODE_IDS = ("vtkMRMLSliceNodeRed", "vtkMRMLSliceNodeYellow", "vtkMRMLSliceNodeGreen")
SLICE_VIEWS = {"Axial": "axial", "Coronal": "coronal", "Sagittal": "sagittal"}  # reformatted views get none
EMBEDDING_DELAY_MS = 300  # a slice shown this long gets its embedding; scrolling through slices computes none
PROMPT_DELAY_MS = 150


class PromptSection(VTKObservationMixin):
    """Follows the Prompt section; ``runPrompt()`` starts a prompt as Apply does (used by "Segment on change")."""

    def __init__(self, ui, logic, jobRunner, runPrompt) -> None:
        VTKObservationMixin.__init__(self)
        self.ui, self.logic, self._jobRunner, self._runPrompt = ui, logic, jobRunner, runPrompt
        self._parameters, self._markups, self._pendingViews, self._embeddingView = None, (None, None), {}, ""
        self._embeddingTimer = self._timer(EMBEDDING_DELAY_MS, self.onSliceShown)
        self._promptTimer = self._timer(PROMPT_DELAY_MS, self.onPromptChanged)
        self._pollTimer = self._timer(200, self.onPollEmbedding, singleShot=False)
        self.ui.promptCheckpointButton.connect("clicked(bool)", self.onCheckpointButton)
        self.ui.undoButton.connect("clicked(bool)", self.onUndoButton)
        for nodeId in SLICE_NODE_IDS:
            sliceNode = slicer.mrmlScene.GetNodeByID(nodeId)
            if sliceNode is not None:
                self.addObserver(sliceNode, vtk.vtkCommand.ModifiedEvent, self.onSliceNodeModified)

    @staticmethod
    def _timer(intervalMs: int, slot, singleShot: bool = True):
        timer = qt.QTimer()
        timer.setInterval(intervalMs)
        timer.setSingleShot(singleShot)
        timer.connect("timeout()", slot)
        return timer

    def update(self, parameters) -> None:
        """Follow the parameter node: place buttons on the chosen markups, observers, undo button."""
        self._parameters = parameters
        roiNode, pointsNode = parameters.promptBox, parameters.promptPoints
        self.ui.promptBoxPlaceWidget.setCurrentNode(roiNode)
        self.ui.promptPointsPlaceWidget.setCurrentNode(pointsNode)
        if (roiNode, pointsNode) != self._markups:
            for node in self._markups:
                if node is not None:
                    self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointDefined)
                    self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointMoved)
            for node in (roiNode, pointsNode):
                if node is not None:
                    self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointDefined)
                    self.addObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointMoved)
            self._markups = (roiNode, pointsNode)
        self.ui.undoButton.enabled = self.logic.promptUndo.available and not self._jobRunner.running

    def onCheckpointButton(self) -> None:
        """Called when the user clicks File... beside the prompt model: picks a checkpoint."""
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Choose a checkpoint"), "", _("Checkpoints (*.pth *.pt *.ckpt);;All files (*)")
        )
        if path:
            self.ui.promptCheckpointLineEdit.text = path  # textChanged: the parameter node follows

    def onPointDefined(self, caller, event) -> None:
        """Called when a box or point is placed: marks a new point negative if asked, and segments if asked."""
        parameters = self._parameters
        if parameters is not None and caller is parameters.promptPoints and parameters.negativePoints:
            last = caller.GetNumberOfControlPoints() - 1
            label = caller.GetNthControlPointLabel(last)
            if last >= 0 and not label.startswith("-"):
                caller.SetNthControlPointLabel(last, f"-{label}")
        self.onPointMoved(caller, event)

    def onPointMoved(self, caller, event) -> None:
        """Called when a box or point was placed or moved: segments again after a short delay if asked."""
        if self._parameters is not None and self._parameters.autoSegment:
            self._promptTimer.start()

    def onPromptChanged(self) -> None:
        """Called by the timer after a prompt changed: runs the prompt unless a job runs or it cannot run."""
        parameters = self._parameters
        if parameters is None or parameters.method != "prompt" or self._jobRunner.running:
            return
        if not self.logic.whyCannotRun(parameters, "segmentation"):
            self._runPrompt()

    def onSliceNodeModified(self, caller, event) -> None:
        """Called when a slice view changes: its embedding is computed once it rests."""
        view = SLICE_VIEWS.get(caller.GetOrientation())
        if view is None or self._parameters is None or self._parameters.method != "prompt":
            return
        sliceToRas = caller.GetSliceToRAS()
        self._pendingViews[view] = [sliceToRas.GetElement(row, 3) for row in range(3)]
        self._embeddingTimer.start()

    def onSliceShown(self) -> None:
        """Called by the timer when the shown slices rest: starts the next background embedding."""
        parameters, job = self._parameters, self.logic.embeddingJob
        if not self._pendingViews or job is not None or self._jobRunner.running:
            return
        if parameters is None or parameters.method != "prompt" or not parameters.inputVolume:
            return
        if not self.ui.promptCollapsibleButton.visible:  # the module is not shown: no work behind the user's back
            self._pendingViews.clear()
            return
        view, positionRas = self._pendingViews.popitem()
        try:
            session = self.logic.promptSession(parameters)  # the first one loads the model
            prepared = session.isSlicePrepared(view, positionRas)
        except MedAIInputError as error:
            self.ui.embeddingLabel.text = str(error)
            return
        if prepared:
            self.ui.embeddingLabel.text = _("The {view} slice is ready (embedding cached).").format(view=view)
            if self._pendingViews:
                self._embeddingTimer.start()
            return
        job = ThreadJob(lambda progress, token: session.prepareSlice(view, positionRas, token), "MedAI embedding")
        self.logic.embeddingJob, self._embeddingView = job, view
        job.start()
        self._pollTimer.start()
        self.ui.embeddingLabel.text = _("Computing the embedding of the {view} slice...").format(view=view)

    def onPollEmbedding(self) -> None:
        """Called by the timer while an embedding is computed: shows when it is ready."""
        job = self.logic.embeddingJob
        status = job.poll() if job is not None else None
        if status is None or not status.finished:
            return
        self._pollTimer.stop()
        self.logic.embeddingJob = None
        job.close()
        if status.state == WorkerState.COMPLETED:
            self.ui.embeddingLabel.text = _("The {view} slice is ready: prompts on it answer at once.").format(
                view=self._embeddingView
            )
        elif status.state == WorkerState.FAILED:
            self.ui.embeddingLabel.text = status.errorMessage.split(": ", 1)[-1]
        if self._pendingViews:
            self._embeddingTimer.start()

    def onUndoButton(self) -> None:
        """Called when the user clicks Undo last prompt."""
        with slicer.util.tryWithErrorDisplay(_("Failed to undo the last prompt."), waitCursor=True):
            self.logic.promptUndo.undo()
        if self._parameters is not None:
            self.update(self._parameters)

    def _stopEmbedding(self) -> None:
        for timer in (self._embeddingTimer, self._promptTimer, self._pollTimer):
            timer.stop()
        self._pendingViews.clear()
        if self.logic.embeddingJob is not None:
            self.logic.embeddingJob.close()  # cancels; the thread ends at its next check
            self.logic.embeddingJob = None

    def sceneClosing(self) -> None:
        """Call when the scene is about to close: nothing kept may refer to its nodes."""
        self._stopEmbedding()
        self.logic.promptUndo.clear()
        self.logic.forgetPromptSession()
        self._forgetMarkups()

    def _forgetMarkups(self) -> None:
        for node in self._markups:
            if node is not None:
                self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPointDefined)
                self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self.onPointMoved)
        self._markups, self._parameters = (None, None), None

    def close(self) -> None:
        """Call when the panel is destroyed: stops the timers, the embedding and every observer."""
        self._stopEmbedding()
        self.removeObservers()
