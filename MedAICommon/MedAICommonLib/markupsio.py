"""Loading and saving markups: Slicer's ``.mrk.json`` and ``.fcsv``, and a plain ``.csv`` of points.

Control points are RAS millimetres in the nodes and in the ``.csv`` files (columns ``label``, ``r``,
``a``, ``s``); Slicer's own files are converted by its storage nodes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import slicer

from .errors import MedAIInputError
from .nodeio import _addToScene, _baseName, _checkExtension, _quietVtk, _readInto, _textLines
from .validation import checkInputFile

__all__ = ["loadMarkups"]


def loadMarkups(scene, path, name: str | None = None):
    """Load markups: Slicer's ``.mrk.json`` (the first markup in the file, any type), a ``.fcsv``
    point list, or a ``.csv`` of points with columns ``label`` (optional) and ``r``, ``a``, ``s``
    in RAS millimetres (``x``, ``y``, ``z`` are read as R, A, S too).

    Args:
        scene: the ``vtkMRMLScene`` to add the markups to.
        path: the markups file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new markups node (control points in RAS).

    Raises:
        MedAIInputError: missing, unreadable or unsupported file.
    """
    filePath = checkInputFile(path, "markups")
    extension = _checkExtension(filePath, (".mrk.json", ".json", ".fcsv", ".csv"), "markups")
    storageNode = None
    if extension in (".mrk.json", ".json"):
        storageNode = slicer.vtkMRMLMarkupsJsonStorageNode()
        markupsTypes = []
        with _quietVtk():
            storageNode.GetMarkupsTypesInFile(str(filePath), markupsTypes)
        nodeClass = getattr(slicer, f"vtkMRMLMarkups{markupsTypes[0]}Node", None) if markupsTypes else None
        if nodeClass is None:
            raise MedAIInputError(f"The markups file {filePath} cannot be read: it holds no markups that Slicer knows.")
        markupsNode = nodeClass()
        _readInto(storageNode, markupsNode, filePath, "markups")
    elif extension == ".fcsv":
        lines = _textLines(filePath, "markups")
        storageNode = slicer.vtkMRMLMarkupsFiducialStorageNode()
        markupsNode = slicer.vtkMRMLMarkupsFiducialNode()
        _readInto(storageNode, markupsNode, filePath, "markups")
        # The .fcsv reader skips lines it does not understand instead of failing.
        if markupsNode.GetNumberOfControlPoints() == 0 and any(not line.startswith("#") for line in lines):
            raise MedAIInputError(f"The markups file {filePath} cannot be read: no line is a point.")
    else:
        markupsNode = slicer.vtkMRMLMarkupsFiducialNode()
        for label, position in _readPointsCsv(filePath):
            markupsNode.AddControlPoint(*position, label)
    return _addToScene(scene, markupsNode, storageNode, name or _baseName(filePath))


def _readPointsCsv(filePath: Path) -> list[tuple[str, tuple[float, float, float]]]:
    """(label, RAS position) of every point of a points ``.csv``; unnamed points are called P-1, P-2..."""
    rows = [row for row in csv.reader(_textLines(filePath, "points")) if row and not row[0].startswith("#")]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    for names in (("r", "a", "s"), ("x", "y", "z")):
        if all(column in header for column in names):
            columns = [header.index(column) for column in names]
            break
    else:
        raise MedAIInputError(f"The points file {filePath} needs a header with columns r, a, s (RAS millimetres).")
    labelColumn = header.index("label") if "label" in header else None
    points = []
    for lineNumber, row in enumerate(rows[1:], start=2):
        try:
            position = tuple(float(row[column]) for column in columns)
        except (ValueError, IndexError):
            raise MedAIInputError(
                f"Line {lineNumber} of the points file {filePath} has no valid r, a, s numbers."
            ) from None
        label = row[labelColumn] if labelColumn is not None and labelColumn < len(row) else f"P-{len(points) + 1}"
        points.append((label, position))
    return points


def _writePointsCsv(markupsNode, target: Path) -> None:
    """Write the control points as ``label,r,a,s`` rows, every coordinate with all its digits."""
    with open(target, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["label", "r", "a", "s"])
        for index in range(markupsNode.GetNumberOfControlPoints()):
            position = markupsNode.GetNthControlPointPosition(index)
            writer.writerow([markupsNode.GetNthControlPointLabel(index)] + [repr(float(v)) for v in position])
