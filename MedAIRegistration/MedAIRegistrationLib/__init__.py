"""MedAIRegistrationLib: the logic of the MedAIRegistration module, importable without Qt or the Slicer desktop."""

from __future__ import annotations
