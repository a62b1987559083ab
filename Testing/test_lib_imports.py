"""Every Lib package imports with plain Python: no Qt, no CTK, no Slicer desktop application.

A fresh interpreter gets an import hook that makes ``qt``, ``ctk``, ``slicer.app``, ``slicer.modules``,
``slicer.ScriptedLoadableModule`` and ``slicer.parameterNodeWrapper`` raise ImportError, then imports
every module of every ``*/MedAI*Lib/`` package. The same hook records which Lib file imports torch or
MONAI at import time (they must be imported lazily, inside functions). A syntax-tree scan catches what
an import cannot: desktop-only calls inside functions (``slicer.app``, the global ``slicer.mrmlScene``,
``processEvents``). The Lib files also run inside Slicer 5.8, whose Python is 3.9.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ["qt", "ctk", "slicer.app", "slicer.modules", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper"]
LAZY = ["torch", "monai"]

CHECKER = textwrap.dedent(
    """
    import importlib, importlib.abc, json, os, sys, traceback

    blocked, lazy, roots = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
    eager = {}

    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in blocked:
                raise ImportError(f"{name} is not available outside the Slicer desktop")
            top = name.split(".")[0]
            if top in lazy and top not in eager:
                frame = sys._getframe(1)
                while frame is not None:
                    fileName = os.path.abspath(frame.f_code.co_filename)
                    if any(fileName.startswith(r + os.sep) for r in roots):
                        eager[top] = fileName
                        break
                    frame = frame.f_back
            return None

    sys.meta_path.insert(0, Guard())
    modules, failures = [], {}
    for root in roots:
        sys.path.insert(0, os.path.dirname(root))
        package = os.path.basename(root)
        for folder, _, files in sorted(os.walk(root)):
            for fileName in sorted(files):
                if fileName.endswith(".py"):
                    relative = os.path.relpath(os.path.join(folder, fileName), os.path.dirname(root))
                    name = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
                    modules.append(name)
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:
            failures[name] = traceback.format_exc(limit=-3)
    print(json.dumps({"modules": modules, "failures": failures, "eager": eager}))
    """
)


def libPackages(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.glob("*/MedAI*Lib") if p.is_dir() and (p / "__init__.py").exists())


def importReport(packages: list[Path], lazy: list[str] = LAZY) -> dict:
    """Import every module of ``packages`` in a fresh interpreter with Qt, CTK and the desktop app absent."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(
        [sys.executable, "-c", CHECKER, json.dumps(BLOCKED), json.dumps(lazy), json.dumps([str(p) for p in packages])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def desktopApiProblems(source: str, fileName: str = "<lib>") -> list[str]:
    """Uses of Qt or the Slicer desktop that an import cannot see (inside functions)."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "slicer" and node.attr in ("app", "mrmlScene", "modules"):
                problems.append(f"{fileName}:{node.lineno}: slicer.{node.attr} (take the scene or nodes as arguments)")
        if isinstance(node, ast.Attribute) and node.attr == "processEvents":
            problems.append(f"{fileName}:{node.lineno}: processEvents (use progress callbacks and a worker)")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in ("qt", "ctk", "__main__") or name in BLOCKED:
                    problems.append(f"{fileName}:{node.lineno}: imports {name}")
    return problems


def python39Problems(source: str, fileName: str = "<lib>") -> list[str]:
    """Slicer 5.8 runs these files with Python 3.9: no newer syntax; ``X | Y`` only in postponed annotations."""
    try:
        tree = ast.parse(source, feature_version=(3, 9))
    except SyntaxError as error:
        return [f"{fileName}: not Python 3.9 syntax: {error}"]
    postponed = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    annotationNodes = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            annotationNodes.update(map(id, ast.walk(node.annotation)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in (
                node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]
            ):
                if arg is not None and arg.annotation is not None:
                    annotationNodes.update(map(id, ast.walk(arg.annotation)))
            if node.returns is not None:
                annotationNodes.update(map(id, ast.walk(node.returns)))
    problems = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
            continue
        if id(node) in annotationNodes:
            if not postponed:
                problems.append(
                    f"{fileName}:{node.lineno}: 'X | Y' annotation without 'from __future__ import annotations'"
                )
        elif _looksLikeType(node.left) or _looksLikeType(node.right):
            problems.append(f"{fileName}:{node.lineno}: 'X | Y' type outside an annotation fails on Python 3.9")
    return problems


def _looksLikeType(node: ast.AST) -> bool:
    builtinTypes = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set", "type", "object"}
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name):
        return node.id in builtinTypes
    return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in builtinTypes


# --- tests on the real packages -------------------------------------------------------------------


def test_every_lib_package_is_found():
    names = [p.name for p in libPackages()]
    assert names == ["MedAICommonLib", "MedAIRegistrationLib", "MedAISegmentationLib", "MedAIUncertaintyLib"]


@pytest.fixture(scope="module")
def report():
    return importReport(libPackages())


def test_every_lib_module_imports_without_qt_or_the_desktop(report):
    assert len(report["modules"]) >= 4
    assert report["failures"] == {}, "\n".join(f"{name}:\n{trace}" for name, trace in report["failures"].items())


def test_torch_and_monai_are_imported_lazily(report):
    assert report["eager"] == {}, f"imported at module level (import them inside functions): {report['eager']}"


def test_lib_source_avoids_desktop_only_api():
    problems = []
    for package in libPackages():
        for path in sorted(package.rglob("*.py")):
            problems += desktopApiProblems(path.read_text(), str(path.relative_to(ROOT)))
    assert problems == []


def test_lib_source_runs_on_slicer_58_python():
    problems = []
    for package in libPackages():
        for path in sorted(package.rglob("*.py")):
            problems += python39Problems(path.read_text(), str(path.relative_to(ROOT)))
    assert problems == []


# --- the checks catch what they are meant to ------------------------------------------------------


def test_import_check_catches_qt_slicer_app_and_eager_torch(tmp_path):
    package = tmp_path / "MedAIDemoLib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fine.py").write_text("import json\n\ndef later():\n    import medaiDemoHeavy\n")
    (package / "usesQt.py").write_text("import qt\n")
    (package / "usesApp.py").write_text("from slicer import app\n")
    (package / "usesWidgets.py").write_text("import slicer.ScriptedLoadableModule\n")
    (package / "eager.py").write_text("import medaiDemoHeavy\n")
    (tmp_path / "medaiDemoHeavy.py").write_text("")
    report = importReport([package], lazy=["medaiDemoHeavy"])
    assert sorted(report["failures"]) == ["MedAIDemoLib.usesApp", "MedAIDemoLib.usesQt", "MedAIDemoLib.usesWidgets"]
    assert report["eager"] == {"medaiDemoHeavy": str(package / "eager.py")}


def test_source_checks_catch_desktop_calls_and_new_syntax():
    assert desktopApiProblems("def f():\n    return slicer.mrmlScene\n")
    assert desktopApiProblems("def f():\n    slicer.app.processEvents()\n")
    assert desktopApiProblems("from __main__ import qt\n")
    assert desktopApiProblems("def f(scene):\n    return scene.GetNodesByClass('x')\n") == []
    assert python39Problems("def f(x: int | None): pass\n")
    assert python39Problems("from __future__ import annotations\nAlias = int | None\n")
    assert python39Problems("from __future__ import annotations\ndef f(x: int | None) -> str | None: pass\n") == []
    assert python39Problems("mask = a | b\n") == []
