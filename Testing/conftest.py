"""Shared pytest fixtures: fresh MRML scenes and the sample data."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests never reach a GPU or the network; keep torch on the two cores of the test machine.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def scene():
    """A fresh, empty MRML scene (slicer-core, no desktop app)."""
    import slicer

    mrmlScene = slicer.vtkMRMLScene()
    yield mrmlScene
    mrmlScene.Clear(1)


@pytest.fixture
def rng():
    """A seeded random generator so that every run sees the same 'random' geometry."""
    return np.random.default_rng(20261122)
