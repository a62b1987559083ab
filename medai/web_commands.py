"""``medai web``: serve the MedAI modules as a web app on real Slicer views (trame-slicer).

``medai/cli.py`` calls ``addWebParser(subparsers)``.

Example:
    $ medai web --port 8080        # then open http://127.0.0.1:8080 in a browser
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["addWebParser", "webCommand"]


def addWebParser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``web`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "web",
        help="serve the MedAI modules as a web app on real Slicer views",
        description="Serve segmentation, registration and uncertainty in a browser, on Slicer's axial, coronal, "
        "sagittal and 3D views rendered offscreen on this computer. Binds 127.0.0.1 unless --host says otherwise; "
        "the app has no login, so expose it to other computers only through an authenticating proxy or an SSH tunnel.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default: %(default)s; 0: any free port)")
    parser.add_argument(
        "--sample", default="KmeansT1", metavar="NAME",
        help="sample data shown when the page opens (default: %(default)s; 'none': no volume)",
    )  # fmt: skip
    parser.set_defaults(run=webCommand)
    return parser


def webCommand(args: argparse.Namespace) -> int:
    """Run ``medai web`` until interrupted; returns 0."""
    from MedAICommonLib.errors import MedAIInputError
    from MedAICommonLib.sampledata import sampleDataNames

    from .web import serve

    if not 0 <= args.port <= 65535:
        raise MedAIInputError(f"--port must lie in 0-65535, got {args.port}.")
    sample = None if args.sample.lower() == "none" else args.sample
    if sample is not None and sample not in sampleDataNames():
        raise MedAIInputError(f"There is no sample data named '{sample}'.")
    print(f"MedAI web app: http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    serve(host=args.host, port=args.port, sample=sample)
    return 0
