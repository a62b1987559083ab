"""``python -m medai``: the same as the ``medai`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
