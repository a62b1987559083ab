"""A prompt-segmentation session on one volume: slice embeddings cached and computed ahead.

The desktop panel keeps one :class:`PromptSession` per (volume, model). When a slice is shown it
calls :meth:`PromptSession.prepareSlice` from a background thread (Qt-free, touches no MRML node),
so that when the user draws a box or clicks, :meth:`PromptSession.segment` (main thread: it reads
the markups and writes the segment) only runs the fast prompt decoder.

Names for the panel (stable):

- ``PromptSession(volumeNode, model="LiteMedSAM", device="auto", window=None, cache=None)``;
- ``session.prepareSlice(sliceView, sliceIndexOrRas, cancelToken=None) -> int`` (embeddings computed);
- ``session.isSlicePrepared(sliceView, sliceIndexOrRas) -> bool``;
- ``session.segment(roiNode=None, pointsNode=None, sliceView="auto", propagate=False,
  segmentationNode=None, segmentId=None, progress=None, cancelToken=None) -> PromptResult``, which is
  the three steps ``session.refresh()`` + ``plan = session.plan(roiNode, pointsNode, sliceView, propagate,
  segmentationNode, segmentId)`` (main thread), ``masks = session.computeMasks(plan, propagate, progress,
  cancelToken)`` (worker thread) and ``session.writeMasks(plan, masks, propagate, segmentationNode,
  segmentId)`` (main thread);
- ``PromptResult.segmentationNode``, ``.segmentId``, ``.sliceView``, ``.sliceIndices``, ``.mask``,
  ``.createdNode``.

Example::

    session = PromptSession(volumeNode)  # loads the model, reads the voxels
    threading.Thread(target=session.prepareSlice, args=("axial", sliceCentreRas)).start()
    result = session.segment(roiNode=roi, segmentationNode=segmentation, segmentId="Segment_1")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.validation import checkVolumeNode
from MedAICommonLib.volumes import arrayFromVolume, ijkToRasFromVolume

from .promptmodels import DEFAULT_PROMPT_MODEL, load_prompt_model
from .promptoutput import writeMaskToSegment
from .promptplan import AXIS_NAMES, PromptPlan, planPromptsOnVolume
from .promptsegment import (
    EmbeddingCache,
    default_cache,
    one_object,
    propagate_through_slices,
    segment_display_image,
    warm_cache,
)
from .promptslices import SLICE_AXES, apply_window, canonical_volume, display_slice, intensity_window

__all__ = ["PromptResult", "PromptSession"]


@dataclass
class PromptResult:
    """What a prompt did.

    Attributes:
        segmentationNode: the segmentation that received the result (created or given).
        segmentId: the segment written.
        sliceView: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        sliceIndices: canonical indices of the slices written (S from inferior, A from posterior or
            R from left, in voxels).
        mask: the object on the input grid (stored KJI order, uint8 0/1).
        createdNode: True when the segmentation node was created by this call.
    """

    segmentationNode: Any
    segmentId: str
    sliceView: str
    sliceIndices: list[int]
    mask: np.ndarray
    createdNode: bool = False


class PromptSession:
    """Prompt segmentation of one volume with one model; embeddings cached per slice.

    Args:
        volumeNode: scalar volume (a 2D image is a volume with one slice); read once here, and again
            by :meth:`segment` when its voxels or geometry changed.
        model: registry id (``"LiteMedSAM"``) or checkpoint path (see ``promptmodels``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        window: ``(low, high)`` intensities mapped to 0-1 (a CT window in HU); None: the 0.5th-99.5th
            percentiles of the volume above its minimum.
        cache: embedding cache (default: the process-wide one, shared by all sessions).
        augment: average the prompted slice over its 8 flips and rotations (see ``promptsegment``;
            about 8 times slower); off: one fixed orientation of the displayed slice.
        augmentPropagation: the same on every propagated slice (slower).
        oneObject: keep the largest connected part of each slice's mask, holes filled (a box or
            click points at one object).

    Raises:
        MedAIInputError: not a scalar volume, a constant image, a bad window, an unknown model or a
            missing/corrupt/unrecognised checkpoint; nothing is created.
    """

    def __init__(
        self,
        volumeNode: Any,
        model: str = DEFAULT_PROMPT_MODEL,
        device: str = "auto",
        window: tuple[float, float] | None = None,
        cache: EmbeddingCache | None = None,
        augment: bool = False,
        augmentPropagation: bool = False,
        oneObject: bool = True,
    ) -> None:
        self.volumeNode = volumeNode
        self.window = window
        self.cache = cache if cache is not None else default_cache
        self.augment = augment
        self.augmentPropagation = augmentPropagation
        self.oneObject = oneObject
        self._readVolume()
        self.promptModel = load_prompt_model(model, device)

    def _geometryKey(self) -> tuple:
        imageData = self.volumeNode.GetImageData()
        mtime = imageData.GetMTime() if imageData is not None else 0
        return mtime, ijkToRasFromVolume(self.volumeNode).round(9).tobytes()

    def _readVolume(self) -> None:
        checkVolumeNode(self.volumeNode, ndims=(3,), allowConstant=False)
        volume = canonical_volume(arrayFromVolume(self.volumeNode), ijkToRasFromVolume(self.volumeNode))
        self.windowRange = intensity_window(volume.voxels, self.window)
        self.volume = volume  # one assignment, so a background prepareSlice sees old or new, never half
        self._key = self._geometryKey()

    def _sliceIndex(self, axis: int, sliceIndexOrRas) -> int:
        count = self.volume.voxels.shape[axis]
        if np.ndim(sliceIndexOrRas) == 0:
            index = int(sliceIndexOrRas)
            if not 0 <= index < count:
                raise MedAIInputError(f"Slice {index} is not one of the {count} {AXIS_NAMES[axis]} slices.")
            return index
        position = self.volume.canonical_index(np.asarray(sliceIndexOrRas, dtype=float))[0, axis]
        if not -0.5 <= position <= count - 0.5:
            raise MedAIInputError(f"The position lies on no slice of the image ({AXIS_NAMES[axis]} view).")
        return int(np.clip(np.round(position), 0, count - 1))

    def _displayImage(self, axis: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, spacing = display_slice(self.volume, axis, index)
        return apply_window(image, self.windowRange), spacing

    def _axis(self, sliceView: str) -> int:
        if sliceView not in SLICE_AXES:
            raise MedAIInputError(f"Slice view '{sliceView}' is not one of {', '.join(SLICE_AXES)}.")
        return SLICE_AXES[sliceView]

    def prepareSlice(self, sliceView: str, sliceIndexOrRas, cancelToken: Any = None) -> int:
        """Compute and cache the embeddings a whole-slice box prompt on this slice will use.

        Safe in a background thread: it reads only the voxels copied when the session started (or
        last refreshed) and touches no MRML node.

        Args:
            sliceView: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
            sliceIndexOrRas: a canonical slice index (S from inferior, A from posterior, R from
                left) or a world RAS point (mm) on the slice, such as the slice view's centre.
            cancelToken: a ``CancelToken``, checked between embeddings.

        Returns:
            How many embeddings were computed (0 when all were cached).

        Raises:
            MedAIInputError: a bad view, or an index/position on no slice.
            MedAICancelledError: cancelled.
        """
        axis = self._axis(sliceView)
        index = self._sliceIndex(axis, sliceIndexOrRas)
        image01, spacing = self._displayImage(axis, index)
        check = cancelToken.raiseIfCancelled if cancelToken is not None else None
        return warm_cache(self.promptModel, image01, spacing, self.augment, self.cache, check)

    def isSlicePrepared(self, sliceView: str, sliceIndexOrRas) -> bool:
        """True when every embedding :meth:`prepareSlice` would compute is cached."""
        axis = self._axis(sliceView)
        image01, spacing = self._displayImage(axis, self._sliceIndex(axis, sliceIndexOrRas))
        return warm_cache(self.promptModel, image01, spacing, self.augment, self.cache, computeMissing=False) == 0

    def _maskOn(self, plan: PromptPlan, index: int, boxRc, pointsRc=None, pointLabels=None, augment=True, whole=True):
        image01, spacing = self._displayImage(plan.axis, index)
        probability = segment_display_image(
            self.promptModel, image01, spacing, boxRc, pointsRc, pointLabels, self.cache, augment
        )
        mask = probability > 0.5
        # A propagated slice may cut the object into parts (temporal lobes below the brain's middle).
        return one_object(mask) if self.oneObject and whole else mask

    def computeMasks(
        self, plan: PromptPlan, propagate: bool = False, progress: Callable | None = None, cancelToken: Any = None
    ) -> dict[int, np.ndarray]:
        """The display masks ``{slice index: mask}`` of a plan; arrays only, safe in a worker thread."""
        if progress:
            progress(0.0, "Segmenting the prompted slice")
        start = self._maskOn(plan, plan.sliceIndex, plan.boxRc, plan.pointsRc, plan.pointLabels, self.augment)
        if not propagate:
            return {plan.sliceIndex: start}
        check = cancelToken.raiseIfCancelled if cancelToken is not None else None
        first, last = plan.sliceRange
        return propagate_through_slices(
            lambda index, box: self._maskOn(plan, index, box, augment=self.augmentPropagation, whole=False),
            plan.sliceIndex, start, first, last, check, progress, plan.boxRc,
        )  # fmt: skip

    def segment(
        self,
        roiNode: Any = None,
        pointsNode: Any = None,
        sliceView: str = "auto",
        propagate: bool = False,
        segmentationNode: Any = None,
        segmentId: str | None = None,
        progress: Callable[[float, str], None] | None = None,
        cancelToken: Any = None,
    ) -> PromptResult:
        """Segment what a box and/or points point at, and write it into a segment (main thread).

        Args:
            roiNode: ``vtkMRMLMarkupsROINode`` box (world RAS mm), or None.
            pointsNode: ``vtkMRMLMarkupsFiducialNode``; labels starting with ``-`` are negative.
            sliceView: ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"auto"`` (see ``promptplan``).
            propagate: also segment the neighbouring slices within the ROI's extent, each prompted by
                the previous slice's mask, until the object ends.
            segmentationNode: where the result goes; None: a new segmentation node.
            segmentId: the segment to replace on the segmented slices; None: a new segment.
            progress: ``progress(fraction, message)``; cancelToken: a ``CancelToken``.

        Returns:
            A :class:`PromptResult`.

        Raises:
            MedAIInputError: bad prompts (outside the image, zero size, on no slice), an unknown
                segment; the scene is left as it was.
            MedAICancelledError: cancelled; the scene is left as it was.
        """
        self.refresh()
        plan = self.plan(roiNode, pointsNode, sliceView, propagate, segmentationNode, segmentId)
        masks = self.computeMasks(plan, propagate, progress, cancelToken)
        if cancelToken is not None:
            cancelToken.raiseIfCancelled()
        result = self.writeMasks(plan, masks, propagate, segmentationNode, segmentId)
        if progress:
            progress(1.0, "Done")
        return result

    def refresh(self) -> None:
        """Read the voxels again if the volume's image data or geometry changed (main thread)."""
        if self._geometryKey() != self._key:
            self._readVolume()

    def plan(
        self,
        roiNode: Any = None,
        pointsNode: Any = None,
        sliceView: str = "auto",
        propagate: bool = False,
        segmentationNode: Any = None,
        segmentId: str | None = None,
    ) -> PromptPlan:
        """Check the prompts and the target segment and place the prompts on a slice (main thread).

        Raises:
            MedAIInputError: as :meth:`segment`, before anything is computed or created.
        """
        plan = planPromptsOnVolume(self.volume, roiNode, pointsNode, sliceView)
        if segmentationNode is not None and segmentId:
            if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
                raise MedAIInputError(f"Segmentation '{segmentationNode.GetName()}' has no segment '{segmentId}'.")
        if propagate and plan.boxRc is None:
            raise MedAIInputError("Propagation through slices needs a box (ROI) prompt.")
        return plan

    def writeMasks(
        self,
        plan: PromptPlan,
        masks: dict[int, np.ndarray],
        propagate: bool = False,
        segmentationNode: Any = None,
        segmentId: str | None = None,
    ) -> PromptResult:
        """Write the display masks of :meth:`computeMasks` into a segment (main thread).

        The prompted slice (or, when propagating, the ROI's slice range) of the segment is replaced;
        the rest of the segment and the other segments are kept.
        """
        volume = plan.volume
        canonical = np.zeros(volume.voxels.shape, dtype=np.uint8)
        for index, mask in masks.items():
            np.moveaxis(canonical, plan.axis, 0)[index] = mask[::-1, ::-1]  # display rows/columns run backwards
        slab = plan.sliceRange if propagate else (plan.sliceIndex, plan.sliceIndex)
        segmentationNode, segmentId, created = writeMaskToSegment(
            self.volumeNode, volume, canonical, plan.axis, slab, segmentationNode, segmentId
        )
        axisName = AXIS_NAMES[plan.axis]
        return PromptResult(segmentationNode, segmentId, axisName, sorted(masks), volume.stored(canonical), created)
