"""Segmentation from prompts on MRML nodes: a box (ROI markup) and/or points on a slice of a volume.

One-call functions over :class:`promptsession.PromptSession` (which the desktop panel keeps to cache
embeddings across prompts). Prompts are markups in world RAS mm (see :mod:`promptplan`); the result
is written on the input volume's voxel grid into a segment: a new segmentation node, a new segment
of an existing one, or an existing segment (replaced on the prompted slices only).

Example::

    result = segmentFromPrompts(volumeNode, roiNode=roi, sliceView="axial")
    print(result.segmentationNode.GetName(), result.sliceIndices)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .promptmodels import DEFAULT_PROMPT_MODEL
from .promptplan import SLICE_VIEWS, PromptPlan, planPrompts
from .promptsegment import EmbeddingCache
from .promptsession import PromptResult, PromptSession

__all__ = [
    "PromptResult",
    "PromptPlan",
    "PromptSession",
    "planPrompts",
    "segmentFromPrompts",
    "prepareSliceEmbeddings",
    "SLICE_VIEWS",
]


def segmentFromPrompts(
    volumeNode: Any,
    roiNode: Any = None,
    pointsNode: Any = None,
    segmentationNode: Any = None,
    segmentId: str | None = None,
    propagate: bool = False,
    sliceView: str = "auto",
    model: str = DEFAULT_PROMPT_MODEL,
    device: str = "cpu",
    window: tuple[float, float] | None = None,
    cache: EmbeddingCache | None = None,
    augment: bool = False,
    augmentPropagation: bool = False,
    oneObject: bool = True,
    progress: Callable[[float, str], None] | None = None,
    cancelToken: Any = None,
) -> PromptResult:
    """Segment the object a box and/or points point at, on one slice or propagated through the ROI.

    Args:
        volumeNode, roiNode, pointsNode, sliceView: see :func:`planPrompts`.
        segmentationNode: where the result goes; None: a new segmentation node.
        segmentId: the segment to replace on the prompted slices; None: a new segment.
        propagate: also segment the neighbouring slices, each prompted by the box of the previous
            slice's mask, within the ROI's extent along the slice axis, until the object ends.
        model: registry id or LiteMedSAM-architecture checkpoint path.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        window: ``(low, high)`` intensities mapped to 0-1 (a CT window in HU); None: 0.5th-99.5th
            percentiles of the volume.
        cache: embedding cache (default: the process-wide one).
        augment: average over the eight flips and rotations of the prompted slice (8 embeddings,
            cached; about 8 times slower, less dependent on the in-plane orientation the model
            prefers). Off: the slice as Slicer shows it, turned into the one orientation chosen
            for LiteMedSAM (``promptorientations.SINGLE_ORIENTATION``); either way the result does not
            depend on how the volume is stored.
        augmentPropagation: the same on every propagated slice (8 times slower).
        oneObject: keep the largest connected part of each slice's mask, holes filled.
        progress: ``progress(fraction, message)``; cancelToken: a ``CancelToken``.

    Returns:
        A :class:`PromptResult`.

    Raises:
        MedAIInputError: bad prompts or inputs, missing or corrupt weights, unknown segment; the
            scene is left as it was.
        MedAICancelledError: cancelled (the scene is left as it was).
    """
    planPrompts(volumeNode, roiNode, pointsNode, sliceView)  # bad prompts are refused before the model loads
    session = PromptSession(volumeNode, model, device, window, cache, augment, augmentPropagation, oneObject)
    return session.segment(
        roiNode,
        pointsNode,
        sliceView,
        propagate,
        segmentationNode,
        segmentId,
        progress=progress,
        cancelToken=cancelToken,
    )


def prepareSliceEmbeddings(
    volumeNode: Any,
    positionRas,
    sliceView: str = "axial",
    model: str = DEFAULT_PROMPT_MODEL,
    device: str = "cpu",
    window: tuple[float, float] | None = None,
    augment: bool = False,
    cache: EmbeddingCache | None = None,
) -> int:
    """Compute and cache the embeddings of the slice through a point, before any prompt is placed.

    The desktop module calls it from a background thread when a slice is shown; later prompts on
    that slice (boxes larger than the crop size) then only run the fast decoder. Nothing in the
    scene changes.

    Args:
        volumeNode: the volume shown; positionRas: a world RAS point (mm) on the slice, such as
            the slice view's centre; sliceView: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        model, device, window, augment, cache: as in :func:`segmentFromPrompts`.

    Returns:
        How many embeddings were computed (0 when all were cached).

    Raises:
        MedAIInputError: the point lies on no slice of the volume, or bad model or window.
        MedAICancelledError: never (use :meth:`PromptSession.prepareSlice` to cancel).
    """
    session = PromptSession(volumeNode, model, device, window, cache, augment)
    return session.prepareSlice(sliceView, [float(v) for v in positionRas])
