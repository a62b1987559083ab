"""MedAI's Slicer-side dependency list: what is missing, wrong pins, protected packages, pyproject agreement."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib

from MedAICommonLib import dependencies
from MedAICommonLib.dependencies import (
    Requirement,
    checkNoProtectedPackages,
    downloadSizeClass,
    missingRequirements,
    pipInstallArguments,
    protectedConstraints,
    readRequirements,
    requirementsPath,
)
from MedAICommonLib.errors import MedAIInputError

ROOT = Path(__file__).resolve().parents[1]


def _pyprojectPins() -> dict[str, str]:
    """normalised name -> specifier of pyproject.toml's [project] dependencies."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {}
    for line in data["project"]["dependencies"]:
        name, specifier = re.match(r"^([A-Za-z0-9._-]+)\s*(.*)$", line).groups()
        pins[dependencies.normalizedName(name)] = specifier.replace(" ", "")
    return pins


def test_shipped_file_is_the_module_resource():
    assert requirementsPath() == ROOT / "MedAICommon" / "Resources" / "requirements.txt"
    assert requirementsPath().is_file()


def test_this_environment_satisfies_the_shipped_requirements():
    assert readRequirements(), "the shipped requirements file lists nothing"
    assert missingRequirements() == []


def test_shipped_pins_are_exactly_pyproject_pins():
    pins = _pyprojectPins()
    for requirement in readRequirements():
        assert requirement.key in pins, f"{requirement.name} is not a dependency in pyproject.toml"
        assert requirement.specifier == pins[requirement.key], requirement.name
        assert requirement.specifier.startswith("=="), f"{requirement.name} is not pinned exactly"


def test_shipped_file_has_no_protected_package_and_no_torch():
    requirements = readRequirements()
    checkNoProtectedPackages(requirements)
    keys = {r.key for r in requirements}
    assert not keys & {"torch", "torchvision", "simpleitk", "vtk", "numpy", "slicer-core"}
    # The Libs' third-party imports that Slicer lacks are all covered.
    assert {"monai", "scikit-image"} <= keys


def test_fake_package_and_wrong_pin_are_reported(tmp_path):
    monai = importlib.metadata.version("monai")
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# comment\n\n--index-url https://example.invalid\n"
        f"monai=={monai}\n"
        "medai-no-such-package==1.0\n"
        "scikit_image==0.0.1  # wrong pin\n"
        f"NiBabel>={importlib.metadata.version('nibabel')},<999\n"
    )
    missing = missingRequirements(path)
    assert [str(r) for r in missing] == ["medai-no-such-package==1.0", "scikit_image==0.0.1"]
    arguments = pipInstallArguments(missing, tmp_path / "constraints.txt")
    assert arguments == [
        "install",
        "medai-no-such-package==1.0",
        "scikit_image==0.0.1",
        "-c",
        str(tmp_path / "constraints.txt"),
    ]


@pytest.mark.parametrize("name", ["SimpleITK", "vtk", "numpy", "Numpy", "slicer-core", "slicer", "qt", "ctk", "torch"])
def test_protected_packages_are_refused(name):
    requirements = [Requirement("monai", "==1.6.1"), Requirement(name, "==1.0")]
    with pytest.raises(MedAIInputError, match=name):
        checkNoProtectedPackages(requirements)
    with pytest.raises(MedAIInputError):
        pipInstallArguments(requirements)


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(MedAIInputError, match="does not exist"):
        readRequirements(tmp_path / "absent.txt")
    path = tmp_path / "requirements.txt"
    path.write_text("monai[all]==1.6.1\n")
    with pytest.raises(MedAIInputError, match="Line 1"):
        readRequirements(path)
    with pytest.raises(MedAIInputError, match="nothing to install"):
        pipInstallArguments([])


def test_constraints_pin_the_installed_protected_packages():
    lines = protectedConstraints()
    assert f"numpy=={importlib.metadata.version('numpy')}" in lines
    assert f"simpleitk=={importlib.metadata.version('SimpleITK')}" in lines


@pytest.mark.parametrize(
    ("installed", "specifier", "expected"),
    [
        ("1.6.1", "==1.6.1", True),
        ("1.6.1", "==1.6", False),
        ("1.6", "==1.6.0", True),
        ("2.0", ">=1.2,<2", False),
        ("1.9.3", ">=1.2,<2", True),
        ("1.4.5", "~=1.4.2", True),
        ("1.5.0", "~=1.4.2", False),
        ("0.26.0", "!=0.26.0", False),
    ],
)
def test_version_comparison_without_packaging(monkeypatch, installed, specifier, expected):
    withPackaging = dependencies._versionSatisfies(installed, specifier)
    monkeypatch.setitem(sys.modules, "packaging.specifiers", None)
    assert dependencies._versionSatisfies(installed, specifier) == withPackaging == expected


def test_download_size_class_grows_with_the_packages():
    assert downloadSizeClass([Requirement("pynrrd", "==1.1.3")]).startswith("small")
    assert downloadSizeClass([Requirement("scikit-image", "==0.26.0")]).startswith("medium")
    assert downloadSizeClass(readRequirements()).startswith("large")
    assert downloadSizeClass([Requirement("medai-unknown"), Requirement("medai-unknown2")]).startswith("medium")


SLICER_SIDE_SCRIPT = r"""
import json, sys, types

# Stand-ins for what only the Slicer desktop has (as in test_widgets.py); MedAICommonLib is the real one.
base = types.ModuleType("slicer.ScriptedLoadableModule")
base.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {"__init__": lambda self, parent: setattr(self, "parent", parent)})
sys.modules["slicer.ScriptedLoadableModule"] = base
sys.modules["slicer.i18n"] = types.SimpleNamespace(tr=lambda text: text)
sys.path.insert(0, sys.argv[1])
import MedAICommonDependencies as d

parent = types.SimpleNamespace()
d.MedAICommonDependencies(parent)
# Everything is installed here, so nothing is asked (slicer.app does not exist outside the desktop).
print(json.dumps({"ensured": d.ensureMedAIDependencies(), "hidden": parent.hidden, "packaging": d._slicerPackaging()}))
"""


def test_slicer_side_does_nothing_when_everything_is_installed():
    import json
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", SLICER_SIDE_SCRIPT, str(ROOT / "MedAICommon")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ensured": True, "hidden": True, "packaging": None}


def test_slicer_side_uses_only_slicer_58_api(monkeypatch):
    import ast
    import importlib.util

    spec = importlib.util.spec_from_file_location("medai_test_widgets", ROOT / "Testing" / "test_widgets.py")
    widgets = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, widgets)  # its dataclasses look their module up there
    spec.loader.exec_module(widgets)
    source = (ROOT / "MedAICommon" / "MedAICommonDependencies.py").read_text()
    tree = ast.parse(source)
    assert widgets.pythonApiProblems(tree) == []
    # slicer.packaging (pip_ensure) arrived in 5.12: reached only through a guarded import, never as an attribute.
    attributes = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "packaging"]
    assert attributes == [] and '"slicer.packaging"' in source
