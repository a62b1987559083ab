"""MedAICommonLib: what all MedAI modules share, importable without Qt or the Slicer desktop.

Submodules (import the one you need; torch and MONAI are only imported inside functions):

- ``errors``: :class:`MedAIInputError` and :class:`MedAICancelledError`.
- ``resources``: where the shared ``Resources/`` folder (models, sample-data manifest) lies.
- ``geometry``: LPS <-> RAS, matrix checks and SimpleITK grids, shared by the bridges below.
- ``volumes``: MRML volume <-> numpy (KJI + IJK-to-RAS), SimpleITK (LPS), MONAI MetaTensor (RAS).
- ``segmentations``: segmentation node <-> label map, keeping names, colours and label values
  (``segmentlabels``: :class:`SegmentInfo` and the label checks).
- ``transforms``: transform nodes <-> SimpleITK transforms (ITK resampling convention, LPS) and
  Slicer's modeling "to parent" convention (RAS); ``transformgrids`` converts B-spline and
  displacement-field grids.
- ``sceneio``: a scene without the desktop app; load and save any node and whole scenes (``.mrml``,
  ``.mrb``). The loaders of each kind live in ``volumeio`` (DICOM series too), ``segmentationio``,
  ``transformio``, ``markupsio`` and ``tableio``; ``nodeio`` and ``mrmlio`` are their internals;
  ``removeNodes`` removes nodes with their display and storage nodes.
- ``validation``: checks of user input with one clear message.
- ``resampling``: label maps moved between voxel grids (nearest neighbour, world RAS); grid equality.
- ``tables``: table nodes filled from Python lists (typed columns with units).
- ``jobs``: progress callbacks and cancel tokens; the background worker used inside Slicer is in
  ``worker`` (its stdout protocol in ``workerprotocol``, process-tree handling in ``processtree``).
- ``devices``: ``auto``/``cpu``/``cuda``/``mps`` selection with CPU fallback on out-of-memory.
- ``models``: the model registry (``Resources/Models/models.json``) with sha256 checks; the cards
  and their schema are in ``modelcards``.
- ``sampledata``: the real sample data listed in ``Resources/SampleData/SampleData.json``; the
  conversions of sources Slicer cannot read as is (InVesalius, PNG/TIFF, label images, landmark
  text) are in ``sampledataconvert``.
- ``checksums``: cached file sha256, shared by ``models`` and ``sampledata``.
- ``rendering``: pictures of real Slicer slice views rendered offscreen.
"""

from __future__ import annotations

__version__ = "0.1.0"
