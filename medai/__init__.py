"""The ``medai`` command line: batch work over many cases, and the demo."""

from __future__ import annotations
