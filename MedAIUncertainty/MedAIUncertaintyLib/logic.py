"""MedAIUncertaintyLogic: the module's logic on MRML nodes, usable from plain Python and by the Slicer module.

Example::

    from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic

    output = MedAIUncertaintyLogic().estimateUncertainty(volumeNode, "BrainExtractionT1", method="mc-dropout", samples=10)
    heatmap = MedAIUncertaintyLogic().explain(imageNode, "NucleusPatchClassifier2D", method="gradcam", centerRas=(250, 300, 0))
"""

from __future__ import annotations

from .explainlogic import ExplainJob, ExplainLogicMixin, ExplainOutput
from .uncertaintylogic import METHODS, UncertaintyJob, UncertaintyLogicMixin
from .uncertaintyresults import UncertaintyOutput

__all__ = ["MedAIUncertaintyLogic", "UncertaintyJob", "UncertaintyOutput", "ExplainJob", "ExplainOutput", "METHODS"]


class MedAIUncertaintyLogic(UncertaintyLogicMixin, ExplainLogicMixin):
    """Uncertainty maps (:meth:`estimateUncertainty`) and saliency heatmaps (:meth:`explain`); stateless."""
