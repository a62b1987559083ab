"""A tiny "your own model" for the module's self-test and the tests: two input channels, known answer.

The TorchScript network says class 1 ("Brighter") where channel A is brighter than channel B, so a
run shows that the volumes reach the network in the card's channel order, on the right voxels. The
two channel volumes lie on an oblique, anisotropic, odd-sized grid (37 x 53 x 11 voxels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["brighterChannels", "writeBrighterModel"]

CARD = {
    "title": "A brighter than B",
    "description": "Class 1 where channel A is brighter than channel B (a test model).",
    "task": "segmentation",
    "spatialDims": 3,
    "inputChannels": [{"name": "A"}, {"name": "B"}],
    "inputSpacingMm": [1.0, 1.0, 1.0],
    "roiSizePx": [32, 32, 16],
    "orientation": "RAS",
    "intensity": {"method": "none"},
    "labels": [{"name": "Brighter", "value": 1, "color": [0.9, 0.3, 0.2]}],
}


def writeBrighterModel(folder: str | Path) -> tuple[str, str]:
    """Write the TorchScript network and its model card into ``folder``; return their paths."""
    import warnings

    import torch

    class Brighter(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(x[:, :1]), 0.5 * (x[:, :1] - x[:, 1:2])], 1)

    folder = Path(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        torch.jit.script(Brighter()).save(str(folder / "brighter.ts"))
    (folder / "brighter.card.json").write_text(json.dumps(CARD, indent=1), encoding="utf-8")
    return str(folder / "brighter.ts"), str(folder / "brighter.card.json")


def brighterChannels(scene: Any) -> tuple[Any, Any]:
    """Channel A (a smooth blob, 0-100) and B (a ramp 30-70 along I) as scalar volumes on one oblique grid."""
    from MedAICommonLib.volumes import createVolumeFromArray

    angles = np.radians([12.0, -7.0, 21.0])
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rotation = (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = rotation @ np.diag([0.7, 0.7, 3.0])
    ijkToRas[:3, 3] = [-12.0, -18.0, -15.0]
    k, j, i = np.meshgrid(np.arange(11), np.arange(53), np.arange(37), indexing="ij")
    ras = np.einsum("ab,bkji->akji", ijkToRas[:3, :3], np.stack([i, j, k])) + ijkToRas[:3, 3, None, None, None]
    distanceMm = np.linalg.norm(ras - np.array([0.0, -3.0, 1.0])[:, None, None, None], axis=0)
    blob = 100.0 / (1.0 + np.exp(0.4 * (distanceMm - 9.0)))
    a = createVolumeFromArray(scene, blob.astype(np.float32), ijkToRas, "A")
    b = createVolumeFromArray(scene, (30.0 + 40.0 * i / 36.0).astype(np.float32), ijkToRas, "B")
    return a, b
