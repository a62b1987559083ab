"""``medai train``: train a segmentation, registration or classification model.

Placeholder owned by the helper of issue #4; it answers "not yet available" (exit status 2) until
that issue lands. ``medai/cli.py`` calls ``addTrainParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["addTrainParser"]


def addTrainParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "train", help="train a segmentation, registration or classification model (not yet available)"
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_notYetAvailable)
    return parser


def _notYetAvailable(_arguments: argparse.Namespace) -> int:
    print("error: 'medai train' is not yet available in this version.", file=sys.stderr)
    return 2
