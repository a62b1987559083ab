"""MedAISegmentationLib: the logic of the MedAISegmentation module, importable without Qt or the Slicer desktop."""

from __future__ import annotations
