"""``medai segment model``: segment with a U-Net from the registry or your own model.

Placeholder owned by the helper of issue #4; it answers "not yet available" (exit status 2) until
that issue lands. ``medai/cli.py`` calls ``addModelParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["addModelParser"]


def addModelParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``model`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "model", help="segment with a U-Net from the registry or your own model (not yet available)"
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_notYetAvailable)
    return parser


def _notYetAvailable(_arguments: argparse.Namespace) -> int:
    print("error: 'medai segment model' is not yet available in this version.", file=sys.stderr)
    return 2
