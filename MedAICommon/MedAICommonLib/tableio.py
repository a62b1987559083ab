"""Loading and saving tables: ``.tsv``, ``.csv`` and tab-separated ``.txt`` files.

A ``.schema.tsv`` (or ``.schema.csv``) beside the table keeps the column types. Floating-point
cells are written with all their digits.
"""

from __future__ import annotations

import csv
from pathlib import Path

import slicer

from .nodeio import _TABLE_EXTENSIONS, _addToScene, _baseName, _checkExtension, _readInto, _textLines, _writeWith
from .validation import checkInputFile

__all__ = ["loadTable"]


def loadTable(scene, path, name: str | None = None):
    """Load a table from a ``.tsv``, ``.csv`` or tab-separated ``.txt`` file (with its
    ``.schema.tsv`` beside it when there is one, which keeps column types).

    Args:
        scene: the ``vtkMRMLScene`` to add the table to.
        path: the table file.
        name: the node name; defaults to the file name without its extension.

    Returns:
        The new ``vtkMRMLTableNode``.

    Raises:
        MedAIInputError: missing, unreadable or unsupported file.
    """
    filePath = checkInputFile(path, "table")
    _checkExtension(filePath, _TABLE_EXTENSIONS + (".txt",), "table")
    _textLines(filePath, "table")
    tableNode = slicer.vtkMRMLTableNode()
    storageNode = slicer.vtkMRMLTableStorageNode()
    _readInto(storageNode, tableNode, filePath, "table")
    return _addToScene(scene, tableNode, storageNode, name or _baseName(filePath))


def _writeTable(storageNode, tableNode, target: Path) -> None:
    """Write a table with every floating-point cell in full precision.

    Slicer's table writer prints 6 significant digits; floating-point columns are therefore
    written from a copy as text with all digits, and the schema file is set back to their type.
    """
    from vtkmodules.vtkCommonCore import VTK_DOUBLE, VTK_FLOAT, vtkStringArray
    from vtkmodules.vtkCommonDataModel import vtkTable

    table = vtkTable()
    table.DeepCopy(tableNode.GetTable())
    copyNode = slicer.vtkMRMLTableNode()
    copyNode.Copy(tableNode)
    copyNode.SetAndObserveTable(table)
    convertedTypes = {}
    for index in range(table.GetNumberOfColumns()):
        column = table.GetColumn(index)
        if column.GetDataType() not in (VTK_DOUBLE, VTK_FLOAT) or column.GetNumberOfComponents() != 1:
            continue
        text = vtkStringArray()
        text.SetName(column.GetName())
        for row in range(column.GetNumberOfTuples()):
            text.InsertNextValue(repr(float(column.GetValue(row))))
        convertedTypes[column.GetName()] = "double" if column.GetDataType() == VTK_DOUBLE else "float"
        table.RemoveColumn(index)
        table.InsertColumn(text, index)
    _writeWith(storageNode, copyNode, target)
    if not convertedTypes:
        return
    # Slicer writes no schema when every column is text, as the copy may now be.
    schemaPath = target.with_name(f"{target.stem}.schema{target.suffix}")
    delimiter = "," if target.suffix.lower() == ".csv" else "\t"
    if schemaPath.is_file():
        with open(schemaPath, newline="") as stream:
            rows = list(csv.reader(stream, delimiter=delimiter))
    else:
        rows = [["columnName", "type", "componentNames"]]
        rows += [[table.GetColumn(i).GetName(), "string", ""] for i in range(table.GetNumberOfColumns())]
    for row in rows[1:]:
        if row and row[0] in convertedTypes:
            row[1] = convertedTypes[row[0]]
    with open(schemaPath, "w", newline="") as stream:
        csv.writer(stream, delimiter=delimiter, lineterminator="\n").writerows(rows)
