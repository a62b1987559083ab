"""Speed of the MedAI watershed against the bare library calls, on one real 3D volume, in one process.

What is timed (best of ``--repeats`` runs each, after one warm-up run):

- **module end to end**: ``MedAISegmentationLogic().runWatershed`` from the MRML volume node to the
  segmentation node ("Object 1", ...) and its object table;
- **seed computation**: the module's own seed stages (smoothing, adaptive foreground, distance
  map, seeds), measured inside the end-to-end run from its progress messages;
- **bare flooding, same markers**: SimpleITK ``MorphologicalWatershedFromMarkers`` and scikit-image
  ``watershed`` with the foreground mask, on the same landscape (inverted distance) and markers;
- **SimpleITK textbook pipeline** for reference: Otsu, Maurer distance, h-maxima seeds, flooding.

Target of issue 3: end to end <= 1.2 x (faster bare flooding + seed computation).

Usage::

    python benchmarks/bench_watershed.py [--volume MNI152T1] [--size 160 192 160] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import SimpleITK as sitk

from MedAICommonLib import sceneio
from MedAICommonLib.sampledata import loadSampleData
from MedAICommonLib.volumes import arrayFromVolume, createVolumeFromArray, ijkToRasFromVolume
from MedAISegmentationLib import watershed
from MedAISegmentationLib.logic import MedAISegmentationLogic


def croppedVolume(scene, name: str, sizeIjk: tuple[int, int, int]):
    """The centre ``sizeIjk`` block of a sample volume, as a new node on the matching sub-grid."""
    source = loadSampleData(scene, name)
    array = arrayFromVolume(source)
    sizeKji = sizeIjk[::-1]
    if any(n < s for n, s in zip(array.shape, sizeKji)):
        raise SystemExit(f"{name} is {array.shape[::-1]} voxels, smaller than the requested {sizeIjk}")
    start = [(n - s) // 2 for n, s in zip(array.shape, sizeKji)]
    block = array[tuple(slice(a, a + s) for a, s in zip(start, sizeKji))]
    ijkToRas = ijkToRasFromVolume(source)
    ijkToRas[:3, 3] = (ijkToRas @ [*start[::-1], 1.0])[:3]
    return createVolumeFromArray(scene, np.ascontiguousarray(block), ijkToRas, f"{name} {'x'.join(map(str, sizeIjk))}")


def best(function, repeats: int) -> tuple[float, object]:
    """Shortest wall time of ``repeats`` calls (after the caller's warm-up) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def endToEnd(volumeNode, repeats: int) -> tuple[float, float, object]:
    """(end-to-end seconds, seed-stage seconds, output) of the module, best run."""
    scene = volumeNode.GetScene()
    runs = []
    for _ in range(repeats):
        stamps = {}
        start = time.perf_counter()
        output = MedAISegmentationLogic().runWatershed(
            volumeNode,
            progress=lambda fraction, message, stamps=stamps: stamps.setdefault(message, time.perf_counter()),
        )
        total = time.perf_counter() - start
        runs.append((total, stamps["Flooding"] - stamps["Smoothing"], output))
        for node in (output.outputNode, output.tableNode):
            scene.RemoveNode(node)
    return min(runs, key=lambda run: run[0])


def sameMarkers(volumeNode):
    """Landscape, markers and mask as the module floods them (default settings), from the public functions."""
    image = arrayFromVolume(volumeNode)
    spacing = np.linalg.norm(ijkToRasFromVolume(volumeNode)[:3, :3], axis=0)[::-1]
    mask, _ = watershed.foreground_mask(image, spacing)
    distance = watershed.distance_to_background_mm(mask, spacing)
    radius = watershed.estimate_object_radius_mm(mask, spacing, distance)
    markers = watershed.seed_markers(distance, spacing, min_seed_distance_mm=radius)
    return -distance, markers, mask, spacing


def simpleItkTextbook(image: np.ndarray, spacing: np.ndarray) -> int:
    """Otsu, distance, h-maxima seeds, flooding: all SimpleITK; returns the object count."""
    sitkImage = sitk.GetImageFromArray(image.astype(np.float32))
    sitkImage.SetSpacing([float(s) for s in spacing[::-1]])
    foreground = sitk.OtsuThreshold(sitkImage, 0, 1)
    distance = sitk.SignedMaurerDistanceMap(
        foreground, insideIsPositive=True, squaredDistance=False, useImageSpacing=True
    )
    seeds = sitk.ConnectedComponent(sitk.RegionalMaxima(sitk.HMaxima(distance, 2.0), fullyConnected=True))
    labels = sitk.MorphologicalWatershedFromMarkers(-distance, seeds, markWatershedLine=False, fullyConnected=False)
    labels = sitk.Mask(labels, foreground)
    return int(sitk.GetArrayViewFromImage(labels).max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default="MNI152T1", help="sample data name (default: %(default)s)")
    parser.add_argument("--size", type=int, nargs=3, default=(160, 192, 160), metavar=("I", "J", "K"))
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    from skimage.segmentation import watershed as skimageWatershed

    scene = sceneio.createScene()
    volumeNode = croppedVolume(scene, arguments.volume, tuple(arguments.size))
    print(f"{volumeNode.GetName()}: {'x'.join(map(str, arguments.size))} voxels; SimpleITK threads "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}; best of {arguments.repeats} after a warm-up")  # fmt: skip

    endToEnd(volumeNode, 1)  # warm-up: imports, first-touch allocations
    total, seeds, output = endToEnd(volumeNode, arguments.repeats)
    landscape, markers, mask, spacing = sameMarkers(volumeNode)
    landscapeImage, markerImage = sitk.GetImageFromArray(landscape), sitk.GetImageFromArray(markers.astype(np.uint32))

    def floodSimpleItk():
        return sitk.MorphologicalWatershedFromMarkers(
            landscapeImage, markerImage, markWatershedLine=False, fullyConnected=False
        )

    def floodSkimage():
        return skimageWatershed(landscape, markers, mask=mask)

    floodSimpleItk(), floodSkimage()
    sitkSeconds, _ = best(floodSimpleItk, arguments.repeats)
    skimageSeconds, _ = best(floodSkimage, arguments.repeats)
    textbookSeconds, textbookCount = best(
        lambda: simpleItkTextbook(arrayFromVolume(volumeNode), spacing), arguments.repeats
    )
    budget = min(sitkSeconds, skimageSeconds) + seeds
    print(
        f"objects found by the module:                  {output.objectCount} "
        f"(radius {output.objectRadiusMm:.2f} mm, {int(markers.max())} seeds)"
    )
    print(f"module end to end (MRML in, segmentation out): {total:7.3f} s")
    print(f"  of which seed computation:                   {seeds:7.3f} s")
    print(
        f"bare SimpleITK MorphologicalWatershedFromMarkers: {sitkSeconds:7.3f} s  (end to end / this = {total / sitkSeconds:5.2f})"
    )
    print(
        f"bare scikit-image watershed with mask:          {skimageSeconds:7.3f} s  (end to end / this = {total / skimageSeconds:5.2f})"
    )
    print(f"SimpleITK textbook pipeline ({textbookCount} objects):        {textbookSeconds:7.3f} s")
    ratio = total / budget
    print(f"end to end / (faster bare flooding + seed computation) = {ratio:.2f}  (target <= 1.20: "
          f"{'met' if ratio <= 1.2 else 'NOT met'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
