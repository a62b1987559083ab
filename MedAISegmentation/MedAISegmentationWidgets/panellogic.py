"""The parameter node turned into Lib calls and jobs, for the module's ``MedAISegmentationLogic`` (Slicer side).

:class:`PanelLogicMixin` goes into the bases of ``MedAISegmentationLogic`` after ``MedAILogicMixin``
(its ``extraParameter``/``extraNode`` keep on the parameter node what no typed field fits: the
registry model, extra input channels, segment IDs). No algorithm lives here and nothing imports Qt.
"""

from slicer.i18n import tr as _

from MedAICommonLib.errors import MedAIInputError
from MedAISegmentationLib.watershedlogic import watershedArgumentsFromPanel

from .modeljob import OWN_MODEL, ModelJob, modelCard
from .promptjob import PromptJob, PromptUndo

__all__ = ["PREVIEW_ROLE", "PanelLogicMixin"]

PREVIEW_ROLE = "watershedPreview"  # the preview segmentation, kept on the parameter node and overwritten each time


class PanelLogicMixin:
    """Parameter-node adapters of the watershed, model, prompt and evaluation; call :meth:`initPanelLogic` first."""

    def initPanelLogic(self) -> None:
        self.promptUndo = PromptUndo()
        self.embeddingJob = None  # the background embedding the Prompt section runs; a prompt lets it finish
        self._promptSession = self._promptSessionKey = self._cardKey = self._card = None

    def whyMethodCannotRun(self, parameterNode) -> str:
        """What stops the chosen method once an input volume is selected, in the user's words; empty if none."""
        if parameterNode.method == "model":
            try:
                channels = self.channelVolumes(parameterNode)
            except MedAIInputError as error:
                return str(error)
            missing = [name for name, node in channels if node is None]
            return _("Select a volume for the input channel {name}.").format(name=missing[0]) if missing else ""
        if parameterNode.method == "prompt":
            points = parameterNode.promptPoints
            if not parameterNode.promptBox and not (points and points.GetNumberOfControlPoints()):
                return _("Place a box (ROI) or at least one point on the structure to segment.")
            return ""
        if parameterNode.backgroundMarkups and not (parameterNode.seedsSegmentation or parameterNode.seedsMarkups):
            return _("Background points need object seeds: select seed segments or seed points.")
        return ""

    def modelChoice(self, parameterNode) -> str:
        """The registry id chosen in the Model section, or the path of the user's own model ('' if none)."""
        chosen = self.extraParameter("modelId") or ""
        return parameterNode.modelPath.strip() if chosen == OWN_MODEL else chosen

    def modelCard(self, parameterNode):
        """The card of the chosen model (kept while the choice stays).

        Raises:
            MedAIInputError: no model chosen, or its file, folder or card cannot be used.
        """
        key = (self.modelChoice(parameterNode), parameterNode.modelCardPath.strip())
        if not key[0]:
            raise MedAIInputError(_("Choose a model, or the file or folder of your own model."))
        if key != self._cardKey:
            self._card = modelCard(*key)  # if this raises, the key is not kept and the next call tries again
            self._cardKey = key
        return self._card

    def channelVolumes(self, parameterNode) -> list:
        """(channel name, volume or None) per input channel of the model, the input volume first."""
        names = [channel["name"] for channel in self.modelCard(parameterNode).inputChannels] or [_("image")]
        extra = [self.extraNode(f"inputChannel{index}") for index in range(1, len(names))]
        return list(zip(names, [parameterNode.inputVolume, *extra]))

    def promptSession(self, parameterNode):
        """The prompt session of the input volume and prompt model (kept while they stay; loads the model).

        Its ``augment`` follows the panel's "Average orientations" at every call.
        """
        from MedAISegmentationLib.promptsession import PromptSession

        model = parameterNode.promptCheckpoint.strip() or "LiteMedSAM"
        key = (parameterNode.inputVolume, model, parameterNode.device)
        if self._promptSession is None or self._promptSessionKey != key:
            self._promptSession = PromptSession(parameterNode.inputVolume, model=model, device=parameterNode.device)
            self._promptSessionKey = key
        self._promptSession.augment = parameterNode.averageOrientations  # the embeddings cached so far stay valid
        return self._promptSession

    def forgetPromptSession(self) -> None:
        """Drop the prompt session (the scene is closing: its volume goes)."""
        self._promptSession = self._promptSessionKey = None

    def prepareMethodJob(self, parameterNode):
        """The job of the chosen method, its inputs read and checked (main thread): ``compute`` is left to do."""
        p = parameterNode
        if p.method == "watershed":
            return self.prepareWatershed(**self.watershedArguments(p))
        if p.method == "model":
            volumes = [node for _name, node in self.channelVolumes(p)]
            return ModelJob(
                self, volumes, self.modelChoice(p), p.device, p.fastMode, p.keepProbabilities,
                p.outputSegmentation, p.outputProbabilityVolume, p.modelCardPath.strip() or None,
            )  # fmt: skip
        segmentId = self.extraParameter("promptSegmentId") if p.outputSegmentation else None
        return PromptJob(
            self.promptSession(p), p.promptBox, p.promptPoints, p.sliceView, p.propagate,
            p.outputSegmentation, segmentId, waitFor=self.embeddingJob,
        )  # fmt: skip

    def finishMethodJob(self, parameterNode, job):
        """Add a model's or a prompt's result to the scene and select it in the panel; None for other jobs."""
        if isinstance(job, PromptJob):
            output = job.createNodes(self.promptUndo)
            self.setExtraParameter("promptSegmentId", output.segmentId)  # the next prompt refines this segment
            if parameterNode is not None:
                parameterNode.outputSegmentation = output.segmentationNode
            return output
        if isinstance(job, ModelJob):
            output = job.createNodes()
            if parameterNode is not None:
                parameterNode.outputSegmentation = output.segmentationNode
                if output.probabilityVolumeNode is not None:
                    parameterNode.outputProbabilityVolume = output.probabilityVolumeNode
            return output
        return None

    def watershedArguments(self, parameterNode, preview: bool = False) -> dict:
        """The keyword arguments of ``prepareWatershed`` (``prepareWatershedPreview`` if ``preview``) the panel gives."""
        segmentIds = (self.extraParameter("foregroundSegmentId"), self.extraParameter("backgroundSegmentId"))
        arguments = watershedArgumentsFromPanel(parameterNode, *segmentIds, preview=preview)
        return {**arguments, "previewNode": self.extraNode(PREVIEW_ROLE)} if preview else arguments

    def evaluationArguments(self, parameterNode) -> dict:
        """The keyword arguments of ``evaluateSegmentation``/``prepareEvaluation`` that the panel's settings give."""
        return {
            "referenceNode": self.extraNode("evaluationReference"),
            "predictionNode": self.extraNode("evaluationPrediction"),
            "instanceLevel": parameterNode.instanceLevel,
            "iouThreshold": parameterNode.iouThreshold,
            "tableNode": parameterNode.evaluationTable,
            "instanceTableNode": parameterNode.instanceTable,
        }
