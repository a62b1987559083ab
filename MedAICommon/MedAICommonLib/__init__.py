"""MedAICommonLib: what all MedAI modules share, importable without Qt or the Slicer desktop.

Submodules (import the one you need; torch and MONAI are only imported inside functions):

- ``errors``: :class:`MedAIInputError` and :class:`MedAICancelledError`.
- ``resources``: where the shared ``Resources/`` folder (models, sample-data manifest) lies.
- ``volumes``: MRML volume <-> numpy (KJI + IJK-to-RAS), SimpleITK (LPS), MONAI MetaTensor (RAS).
- ``segmentations``: segmentation node <-> label map, keeping names, colours and label values.
- ``transforms``: transform nodes <-> SimpleITK transforms (ITK resampling convention, LPS) and
  Slicer's modeling "to parent" convention (RAS).
- ``sceneio``: a scene without the desktop app; load and save volumes, segmentations, transforms,
  markups, tables and whole scenes (``.mrml``, ``.mrb``).
- ``validation``: checks of user input with one clear message.
- ``jobs``: progress callbacks, cancel tokens and the background worker used inside Slicer.
- ``devices``: ``auto``/``cpu``/``cuda``/``mps`` selection with CPU fallback on out-of-memory.
- ``models``: the model registry (``Resources/Models/models.json``) with sha256 checks.
- ``sampledata``: the real sample data listed in ``Resources/SampleData/SampleData.json``.
- ``rendering``: pictures of real Slicer slice views rendered offscreen.
"""

from __future__ import annotations

__version__ = "0.1.0"
