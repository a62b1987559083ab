"""MedAISegmentationLogic: the watershed and the evaluation on MRML nodes, without Qt.

Works in the Slicer desktop, in plain Python on ``slicer-core`` and behind the ``medai`` command
line. Every method takes the nodes it works on (there is no global scene), checks its inputs
before touching the scene, and on failure or cancel leaves the scene as it was.

The work is split by responsibility: :mod:`.watershedlogic` (inputs, the job, its steps) with
:mod:`.watershedoutput` (output nodes and the object table), :mod:`.watershedpreview` (the
foreground and seeds a run would flood, before flooding), and :mod:`.evaluationlogic`
(inputs, the job, its steps) with :mod:`.evaluationoutput` (results and metric tables), and
:mod:`.modellogic` (segmentation with a network, see :mod:`.modelinference`). This class combines their entry points; the desktop module's
logic class derives from it and from ``ScriptedLoadableModuleLogic``.

Geometry: points are RAS millimetres (world, parent transforms applied); outputs lie on the
input's voxel grid, under the input's parent transform. Before computing, the voxels are put in
one canonical axis order (the storage axes closest to S, A, R, each increasing), so a volume
stored with permuted, flipped or oblique axes gives exactly the same objects in physical space.

Example (plain Python)::

    from MedAICommonLib import sceneio
    from MedAISegmentationLib.logic import MedAISegmentationLogic

    scene = sceneio.createScene()
    image = sceneio.loadVolume(scene, "nuclei.tif")
    result = MedAISegmentationLogic().runWatershed(image)
    print(result.objectCount, result.tableNode.GetNumberOfRows())
"""

from __future__ import annotations

from MedAICommonLib.resampling import resampleLabelsNearest

from .canonicalgrid import canonicalAxes, localIjkToRas
from .evaluationlogic import EvaluationJob, EvaluationLogic, EvaluationOutput
from .modellogic import ModelInferenceLogic, ModelSegmentationJob, ModelSegmentationOutput
from .watershedlogic import WatershedJob, WatershedLogic
from .watershedoutput import WatershedOutput, objectColor
from .watershedpreview import WatershedPreview, WatershedPreviewJob, WatershedPreviewLogic

__all__ = [
    "MedAISegmentationLogic",
    "WatershedJob",
    "WatershedOutput",
    "WatershedPreviewJob",
    "WatershedPreview",
    "EvaluationJob",
    "EvaluationOutput",
    "ModelSegmentationJob",
    "ModelSegmentationOutput",
    "objectColor",
    # Defined in canonicalgrid and MedAICommonLib.resampling; importable from here too.
    "canonicalAxes",
    "localIjkToRas",
    "resampleLabelsNearest",
]


class MedAISegmentationLogic(WatershedLogic, WatershedPreviewLogic, EvaluationLogic, ModelInferenceLogic):
    """The MedAISegmentation module's work on MRML nodes: watershed, its preview, evaluation and networks.

    Qt-free: runs in the desktop, in plain Python on slicer-core and behind ``medai``. It holds no
    state, so constructing it is free and it mixes with ``ScriptedLoadableModuleLogic``.

    Entry points: :meth:`runWatershed` (or :meth:`prepareWatershed` for the three-step
    :class:`WatershedJob`), :meth:`runWatershedPreview` (or :meth:`prepareWatershedPreview` for the
    three-step :class:`WatershedPreviewJob`: the foreground and the seeds before flooding) and :meth:`evaluateSegmentation` (or :meth:`prepareEvaluation` for the
    three-step :class:`EvaluationJob`) and :meth:`segmentWithModel` (or :meth:`prepareModelSegmentation`
    for the three-step :class:`ModelSegmentationJob`: shipped or users' networks, see :mod:`.modellogic`).
    """
