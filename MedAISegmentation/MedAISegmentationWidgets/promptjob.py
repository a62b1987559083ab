"""The panel's prompt: a box and/or points segmented in a background thread, written with undo.

A :class:`MedAISegmentationLib.promptsession.PromptSession` holds the voxels of the volume and the cached
slice embeddings. The job places the prompts on a slice on the main thread (it reads the markups),
computes the masks in the thread (arrays only: the prompt decoder, and the encoder for slices whose
embedding is not cached yet), and writes them into the segment on the main thread, after saving the
segmentation's state for :class:`PromptUndo`.

Undo follows Slicer's Segment Editor: scene-wide undo (``vtkMRMLScene::SaveStateForUndo``) is off by
default in the application, so the editor keeps a ``vtkSegmentationHistory`` per segmentation (states of
the segments, restored with ``RestorePreviousState``); :class:`PromptUndo` does the same, and removes a
segmentation node that a prompt created.

Example (plain Python)::

    session = PromptSession(volumeNode)
    job = PromptJob(session, roiNode=roi)
    job.compute()  # in a thread in the desktop
    result = job.createNodes(undo)
"""

from __future__ import annotations

from typing import Any

__all__ = ["PromptJob", "PromptUndo"]

MAXIMUM_UNDO_STATES = 10


class PromptUndo:
    """Undo for prompted results: per segmentation a ``vtkSegmentationHistory``, plus nodes a prompt created."""

    def __init__(self) -> None:
        self._histories: dict[str, Any] = {}
        self._steps: list[tuple[str, Any]] = []  # ("restore" or "remove", segmentation node), newest last

    def _history(self, segmentationNode: Any) -> Any:
        import slicer

        key = segmentationNode.GetID()
        history = self._histories.get(key)
        if history is None or history.GetSegmentation() is not segmentationNode.GetSegmentation():
            history = slicer.vtkSegmentationHistory()
            history.SetMaximumNumberOfStates(MAXIMUM_UNDO_STATES)
            history.SetSegmentation(segmentationNode.GetSegmentation())
            self._histories[key] = history
        return history

    def saveState(self, segmentationNode: Any) -> None:
        """Call just before a prompt writes into an existing segmentation."""
        self._history(segmentationNode).SaveState()
        self._steps.append(("restore", segmentationNode))
        del self._steps[:-MAXIMUM_UNDO_STATES]

    def created(self, segmentationNode: Any) -> None:
        """Call after a prompt created ``segmentationNode``: undoing removes it."""
        self._steps.append(("remove", segmentationNode))
        del self._steps[:-MAXIMUM_UNDO_STATES]

    @property
    def available(self) -> bool:
        """True when :meth:`undo` has a step whose segmentation is still in a scene."""
        self._steps = [(kind, node) for kind, node in self._steps if node.GetScene() is not None]
        return bool(self._steps)

    def undo(self) -> Any:
        """Restore the segmentation before the last prompted result (or remove the node it created).

        Returns:
            The segmentation node restored or removed, or None when there is nothing to undo.
        """
        if not self.available:
            return None
        kind, node = self._steps.pop()
        if kind == "remove":
            node.GetScene().RemoveNode(node)
        else:
            self._history(node).RestorePreviousState()
        return node

    def clear(self) -> None:
        """Forget every step (the scene is closing)."""
        self._histories.clear()
        self._steps.clear()


class PromptJob:
    """One prompt as three steps: plan (main thread), masks (thread), segment written (main thread).

    Args:
        session: a ``PromptSession`` on the input volume.
        roiNode: ``vtkMRMLMarkupsROINode`` box (RAS mm) or None; pointsNode: ``vtkMRMLMarkupsFiducialNode``
            (a label starting with ``-`` is a negative point) or None.
        sliceView: ``"auto"``, ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        propagate: segment the neighbouring slices within the ROI's extent too.
        segmentationNode: where the result goes (None: a new segmentation); segmentId: the segment to replace
            on the segmented slices (None: a new segment).
        waitFor: a running job (the background embedding) to let finish before computing, or None.

    Raises:
        MedAIInputError: no prompt, a box outside the image or of zero size, points on no slice, an unknown
            segment, propagation without a box; nothing is created.
    """

    def __init__(
        self,
        session: Any,
        roiNode: Any = None,
        pointsNode: Any = None,
        sliceView: str = "auto",
        propagate: bool = False,
        segmentationNode: Any = None,
        segmentId: str | None = None,
        waitFor: Any = None,
    ) -> None:
        session.refresh()  # re-reads the voxels if they changed since the session started
        self.plan = session.plan(roiNode, pointsNode, sliceView, propagate, segmentationNode, segmentId)
        self.session, self.propagate, self._waitFor = session, propagate, waitFor
        self.segmentationNode, self.segmentId = segmentationNode, segmentId
        self.masks = None

    def compute(self, progress=None, cancelToken=None) -> PromptJob:
        """Compute the masks (arrays only, safe in a background thread); returns self."""
        if self._waitFor is not None:
            self._waitFor.wait()  # its embedding is likely the one this prompt needs
        self.masks = self.session.computeMasks(self.plan, self.propagate, progress, cancelToken)
        return self

    def createNodes(self, undo: PromptUndo | None = None) -> Any:
        """Write the masks into the segment (main thread), saving the state for ``undo`` first.

        Returns:
            The session's ``PromptResult`` (segmentation node, segment ID, slice view, slice indices, mask).
        """
        if self.masks is None:
            raise RuntimeError("PromptJob.createNodes called before compute.")
        segmentationNode = self.segmentationNode if self.segmentationNode and self.segmentationNode.GetScene() else None
        if undo is not None and segmentationNode is not None:
            undo.saveState(segmentationNode)
        segmentId = self.segmentId if segmentationNode is not None else None  # the node may have left the scene
        result = self.session.writeMasks(self.plan, self.masks, self.propagate, segmentationNode, segmentId)
        if undo is not None and result.createdNode:
            undo.created(result.segmentationNode)
        return result
