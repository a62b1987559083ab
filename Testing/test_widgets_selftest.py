"""The MedAISegmentation module's own self-test class, run outside the Slicer desktop.

``MedAISegmentationTest`` drives the module's logic adapter (parameter node -> Lib jobs in background
threads -> nodes) on the real Lib, MRML (slicer-core), MONAI and LiteMedSAM. Only what the desktop
application alone provides is stood in for, in a separate interpreter: ``slicer.mrmlScene`` (a real
scene), ``ScriptedLoadableModule*`` base classes (the logic's parameter node is a real
``vtkMRMLScriptedModuleNode`` singleton in that scene), a ``parameterNodeWrapper`` that keeps the typed
fields with their defaults, the translation function, and empty ``qt``/``ctk`` modules (the panel's
widgets are never built here: Testing/test_widgets.py checks them against the .ui).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, sys, types, typing, unittest
root = sys.argv[1]
sys.path[:0] = [root + "/MedAICommon", root + "/MedAISegmentation"]
import slicer

slicer.mrmlScene = slicer.vtkMRMLScene()
sys.modules["qt"] = types.ModuleType("qt")
sys.modules["ctk"] = types.ModuleType("ctk")
i18n = types.ModuleType("slicer.i18n")
i18n.tr = i18n.translate = lambda text, *args: text
sys.modules["slicer.i18n"] = slicer.i18n = i18n

base = types.ModuleType("slicer.ScriptedLoadableModule")


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node = slicer.mrmlScene.AddNode(node)
        return node


base.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
base.ScriptedLoadableModuleTest = unittest.TestCase
base.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
base.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
base.__all__ = [name for name in vars(base) if name.startswith("Scripted")]
sys.modules["slicer.ScriptedLoadableModule"] = slicer.ScriptedLoadableModule = base

wrapper = types.ModuleType("slicer.parameterNodeWrapper")
values = {}  # (parameter node ID, field) -> value: instances on one node share their values, as on the node


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in hints}

    class Wrapped:
        def __init__(self, node):
            object.__setattr__(self, "parameterNode", node)

        def __getattr__(self, name):
            if name not in defaults:
                raise AttributeError(name)
            value = values.get((self.parameterNode.GetID(), name), defaults[name])
            return None if getattr(value, "GetScene", lambda: True)() is None else value  # a removed node

        def __setattr__(self, name, value):
            if name not in defaults:
                raise AttributeError(f"{cls.__name__} has no parameter {name}")
            values[(self.parameterNode.GetID(), name)] = value

    Wrapped.__name__ = cls.__name__
    return Wrapped


# Closing the scene resets its singleton nodes, the parameter node among them: the fields read their defaults.
slicer.mrmlScene.AddObserver(slicer.vtkMRMLScene.StartCloseEvent, lambda caller, event: values.clear())
wrapper.parameterNodeWrapper = parameterNodeWrapper
wrapper.Choice = wrapper.WithinRange = lambda *args: None
sys.modules["slicer.parameterNodeWrapper"] = slicer.parameterNodeWrapper = wrapper

import MedAISegmentation

suite = unittest.defaultTestLoader.loadTestsFromTestCase(MedAISegmentation.MedAISegmentationTest)
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
print(json.dumps({"run": result.testsRun, "failures": [str(t) for t, _ in result.failures + result.errors]}))
"""


def test_module_self_test_passes_outside_the_desktop():
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["failures"] == [], result.stderr[-6000:]
    assert record["run"] >= 3  # watershed/preview/evaluation, model, prompt
