"""The ``medai`` command line (see ARCHITECTURE.md, "Command line contract").

Every subcommand of the contract is listed by ``medai --help``. Those whose module has not
arrived yet say so and exit with status 2 instead of pretending to work. Bad input (a
:class:`~MedAICommonLib.errors.MedAIInputError` raised anywhere) prints one line
``error: <message>`` on stderr and exits with status 2, having written no output file.

Example:
    $ medai data list
    $ medai data path Colin27
    $ medai demo --output medai-output/demo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .explain_commands import addExplainParser
from .model_commands import addModelParser
from .prompt_commands import addPromptParser
from .register_commands import addRegisterParser
from .segment_commands import addEvaluateParser, addWatershedParser
from .train_commands import addTrainParser
from .uncertainty_commands import addUncertaintyParser
from .web_commands import addWebParser

__all__ = ["main", "buildParser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran but a check it makes failed
EXIT_USAGE = 2  # bad input or an unavailable command: nothing was written
EXIT_CANCELLED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medai`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Never raises ``SystemExit``, so that tests can call it in-process.
    """
    from MedAICommonLib.errors import MedAICancelledError, MedAIInputError
    from MedAICommonLib.rendering import OffscreenRenderingError

    parser = buildParser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(exit_.code or 0)
    try:
        return int(arguments.run(arguments))
    except MedAIInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OffscreenRenderingError as error:  # the machine, not the input: see README, troubleshooting
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (MedAICancelledError, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED


def buildParser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of the contract."""
    from MedAICommonLib import __version__

    parser = argparse.ArgumentParser(
        prog="medai", description="MedAI: segmentation, registration and uncertainty on real MRML scenes."
    )
    parser.add_argument("--version", action="version", version=f"medai {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _addDataCommand(commands)
    _addSegmentCommand(commands)
    addEvaluateParser(commands)
    addRegisterParser(commands)
    addUncertaintyParser(commands)
    addExplainParser(commands)
    addTrainParser(commands)
    addWebParser(commands)
    _addDemoCommand(commands)
    return parser


def _addSegmentCommand(commands) -> None:
    segment = commands.add_parser("segment", help="segment an image: watershed, model or prompt")
    methods = segment.add_subparsers(dest="method", metavar="METHOD", required=True)
    addWatershedParser(methods)
    addPromptParser(methods)
    addModelParser(methods)


def _addDataCommand(commands) -> None:
    data = commands.add_parser("data", help="list the sample data or print where an item lies")
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="names, kinds, shapes and descriptions of the sample data")
    listing.set_defaults(run=_runDataList)
    path = actions.add_parser("path", help="print the path of one sample data file (checksum verified)")
    path.add_argument("name", metavar="NAME", help="sample data name, as listed by 'medai data list'")
    path.set_defaults(run=_runDataPath)


def _addDemoCommand(commands) -> None:
    demo = commands.add_parser(
        "demo", help="run what MedAI can do on real sample data; write a .mrb scene and pictures"
    )
    demo.add_argument(
        "--output", "-o", default="medai-output/demo", metavar="DIR", help="output folder (default: %(default)s)"
    )
    demo.set_defaults(run=_runDemo)


def _runDataList(_arguments: argparse.Namespace) -> int:
    from MedAICommonLib import sampledata

    rows = [_describeSampleData(sampledata.sampleDataInfo(name)) for name in sampledata.sampleDataNames()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)] if rows else [0, 0, 0]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    return EXIT_OK


def _describeSampleData(info: dict) -> tuple[str, str, str, str]:
    """(name, kind, size, description) of one sample data item, as ``sampleDataInfo`` gives it."""
    size = "x".join(str(n) for n in info["size"]) if info.get("size") else "-"
    if info.get("spacingMm"):
        size += " @ " + "x".join(f"{value:g}" for value in info["spacingMm"]) + " mm"
    return info["name"], info["kind"], size, info.get("description", "")


def _runDataPath(arguments: argparse.Namespace) -> int:
    from MedAICommonLib import sampledata

    print(sampledata.sampleDataPath(arguments.name))
    return EXIT_OK


def _runDemo(arguments: argparse.Namespace) -> int:
    from . import demo

    result = demo.runDemo(arguments.output)
    return EXIT_OK if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
