"""``medai web``: serve the MedAI modules as a web app on real Slicer views.

Placeholder owned by the helper of issue #9; it answers "not yet available" (exit status 2) until
that issue lands. ``medai/cli.py`` calls ``addWebParser(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["addWebParser"]


def addWebParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``web`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "web", help="serve the MedAI modules as a web app on real Slicer views (not yet available)"
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(run=_notYetAvailable)
    return parser


def _notYetAvailable(_arguments: argparse.Namespace) -> int:
    print("error: 'medai web' is not yet available in this version.", file=sys.stderr)
    return 2
