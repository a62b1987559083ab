"""``medai uncertainty``: segmentation with voxel-wise uncertainty maps.

Placeholder owned by the helper of issue #8; it answers "not yet available" (exit status 2) until
that issue lands. ``medai/cli.py`` calls ``addUncertaintyParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["addUncertaintyParser"]


def addUncertaintyParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``uncertainty`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "uncertainty", help="segmentation with voxel-wise uncertainty maps (not yet available)"
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_notYetAvailable)
    return parser


def _notYetAvailable(_arguments: argparse.Namespace) -> int:
    print("error: 'medai uncertainty' is not yet available in this version.", file=sys.stderr)
    return 2
