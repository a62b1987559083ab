"""Objects (instances) from the class probabilities of a foreground + boundary network (nuclei).

The ``NucleiFluorescence2D`` model outputs three classes: background, object interior and object
boundary. Its model card names :func:`instancesFromProbabilities` as ``postprocessing``, so that
the inference turns probabilities on the input grid into one label per nucleus: the interior cores
(interior probability above a threshold, cut apart by the boundary class) are the seeds, and the
watershed of part 1 (``watershedflood.flood``) floods them over the foreground (interior plus
boundary), so touching nuclei split along their shared boundary.
"""

from __future__ import annotations

import numpy as np

__all__ = ["instancesFromProbabilities"]


def instancesFromProbabilities(
    probabilities: np.ndarray,
    spacingMm=None,
    foregroundThreshold: float = 0.5,
    seedThreshold: float = 0.5,
    minSeedAreaPx: int = 4,
    minObjectAreaPx: int = 12,
) -> np.ndarray:
    """Label map of objects from (background, interior, boundary) probabilities.

    Args:
        probabilities: (3, *spatial) class probabilities in any storage order (KJI for MRML); axes
            of size 1 are kept in the output shape.
        spacingMm: voxel size per spatial axis (accepted for the post-processing contract; the
            sizes below are in voxels, as the network was trained at its own spacing).
        foregroundThreshold: a voxel is foreground when 1 - background probability reaches this.
        seedThreshold: interior probability a seed voxel must reach.
        minSeedAreaPx: seeds smaller than this (voxels) are dropped.
        minObjectAreaPx: objects smaller than this (voxels) are removed.

    Returns:
        int32 label map shaped like ``probabilities[0]``: 0 background, objects 1..N by decreasing size.
    """
    from scipy import ndimage

    from .watershedflood import _by_decreasing_size, flood

    probabilities = np.asarray(probabilities, dtype=np.float32)
    shape = probabilities.shape[1:]
    squeezed = probabilities.reshape((probabilities.shape[0],) + tuple(s for s in shape if s > 1))
    background, interior = squeezed[0], squeezed[1]
    foreground = (1.0 - background) >= foregroundThreshold
    seeds, count = ndimage.label(interior >= seedThreshold)
    if count:
        sizes = np.bincount(seeds.ravel())
        small = sizes < minSeedAreaPx
        small[0] = False
        seeds[small[seeds]] = 0
    labels = flood(1.0 - interior, seeds, foreground)
    if labels.any():
        sizes = np.bincount(labels.ravel())
        labels[(sizes < minObjectAreaPx)[labels]] = 0
        labels = _by_decreasing_size(labels)
    return labels.astype(np.int32).reshape(shape)
