"""MedAIRegistrationLib: the logic of the MedAIRegistration module, importable without Qt or the Slicer desktop.

- ``logic``: :class:`MedAIRegistrationLogic` (``registerVolumes``) on MRML nodes, Slicer camelCase.
- ``settings``: the settings of one stage (``StageSettings``) and what every stage shares (``StageInputs``).
- ``registration``, ``deformable``, ``pipeline``: SimpleITK stages (linear, B-spline, diffeomorphic
  demons) and their chaining, pure functions in snake_case, ITK resampling convention (LPS).
- ``svf``: symmetric diffeomorphic registration on local NCC (stationary velocity field, torch).
- ``projective``: the homography of 2D images (torch L-BFGS).
- ``presets``: chains of stages read from ``Resources/Presets/*.json``.
- ``quality``, ``assessment``: Dice of propagated labels, landmark error, Jacobian, folding,
  inverse consistency (pure, and on MRML nodes).
- ``reporting``: the metric table and chart; 2D images held as one-slice volumes.
- ``worker``: the background process the Slicer panel runs.
"""

from __future__ import annotations
