"""MedAIUncertaintyLib: the logic of the MedAIUncertainty module, importable without Qt or the Slicer desktop."""

from __future__ import annotations
