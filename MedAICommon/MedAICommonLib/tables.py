"""Filling MRML table nodes from Python lists, with typed columns and units.

Example:
    >>> fillTable(tableNode, [("Object", "string", ["a", "b"], ""), ("Volume", "double", [1.5, 2.0], "mm3")])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import MedAIInputError

__all__ = ["fillTable", "COLUMN_KINDS"]

COLUMN_KINDS = ("string", "int", "double")


def fillTable(tableNode: Any, columns: Sequence[tuple[str, str, Sequence[Any], str]]) -> Any:
    """Replace the whole content of a table node by the given columns.

    Args:
        tableNode: the ``vtkMRMLTableNode`` to overwrite.
        columns: ``(name, kind, values, unit)`` per column; ``kind`` is one of :data:`COLUMN_KINDS`
            (NaN is allowed in ``"double"`` columns), ``unit`` is shown by Slicer's table view
            (``"mm3"``, ``"mm"``; ``""`` for none). All columns must hold the same number of values.

    Returns:
        ``tableNode``.

    Raises:
        MedAIInputError: an unknown column kind or columns of different lengths; the table is
            left as it was then.
    """
    import vtk

    arrays = {"string": vtk.vtkStringArray, "int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray}
    lengths = {len(values) for _name, _kind, values, _unit in columns}
    unknown = sorted({kind for _name, kind, _values, _unit in columns} - set(COLUMN_KINDS))
    if unknown or len(lengths) > 1:
        problem = f"unknown column kinds {unknown}" if unknown else f"columns of different lengths {sorted(lengths)}"
        raise MedAIInputError(f"Table '{tableNode.GetName()}' cannot be filled: {problem}.")
    table = tableNode.GetTable()
    while table.GetNumberOfColumns():
        table.RemoveColumn(0)
    for name, kind, values, _unit in columns:
        column = arrays[kind]()
        column.SetName(name)
        column.SetNumberOfValues(len(values))
        for index, value in enumerate(values):
            column.SetValue(index, value)
        table.AddColumn(column)
    for name, _kind, _values, unit in columns:
        if unit:
            tableNode.SetColumnUnitLabel(name, unit)
    tableNode.Modified()
    return tableNode
