"""Checks of the house: what CI runs, what git holds."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_BYTES = 1024 * 1024


def _gitFiles() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.stdout.decode().split("\0") if name]


def large_files_outside_registry(files: list[str], registeredWeights: set[str]) -> list[str]:
    """Files over 1 MB that are not model weights listed in the registry."""
    big = [name for name in files if (ROOT / name).is_file() and (ROOT / name).stat().st_size > MAX_FILE_BYTES]
    return [name for name in big if name not in registeredWeights]


def _registeredWeights() -> set[str]:
    registry = json.loads((ROOT / "Resources/Models/models.json").read_text())
    models = registry["models"] if isinstance(registry, dict) else registry
    weights = set()
    for model in models:
        location = str(model.get("weights", {}).get("location", "")) if isinstance(model.get("weights"), dict) else ""
        if location and not location.startswith("package:"):
            weights.add(f"Resources/Models/{location}")
    return weights


def test_only_registered_model_weights_are_large():
    assert large_files_outside_registry(_gitFiles(), _registeredWeights()) == []


def test_size_check_catches_a_large_file(tmp_path, monkeypatch):
    big = ROOT / "build" / "big.bin"
    big.parent.mkdir(exist_ok=True)
    try:
        big.write_bytes(b"\0" * (MAX_FILE_BYTES + 1))
        assert large_files_outside_registry(["build/big.bin"], set()) == ["build/big.bin"]
        assert large_files_outside_registry(["build/big.bin"], {"build/big.bin"}) == []
    finally:
        big.unlink()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quickStart = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(bash \.ci/quickstart \w+)\s*$", quickStart, flags=re.MULTILINE)
    assert commands == ["bash .ci/quickstart demo", "bash .ci/quickstart test"]
    assert "exec bash .ci/quickstart test" in (ROOT / ".ci/run").read_text()


def test_ignored_setup_folders():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"/.venv/", "/.medai-data/"} <= set(ignored)
