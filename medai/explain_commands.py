"""``medai explain``: heat map explaining a model's output, with sanity checks.

Placeholder owned by the helper of issue #8; it answers "not yet available" (exit status 2) until
that issue lands. ``medai/cli.py`` calls ``addExplainParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["addExplainParser"]


def addExplainParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``explain`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "explain", help="heat map explaining a model's output, with sanity checks (not yet available)"
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_notYetAvailable)
    return parser


def _notYetAvailable(_arguments: argparse.Namespace) -> int:
    print("error: 'medai explain' is not yet available in this version.", file=sys.stderr)
    return 2
