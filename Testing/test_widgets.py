"""The module panels, checked without the Slicer desktop.

Each ``.ui`` file is read as XML and each module file as a syntax tree (it cannot be imported
outside Slicer). The checks: every ``SlicerParameterName`` names a field of the module's
``@parameterNodeWrapper`` class and every field has a widget that Slicer 5.8's parameter-node
connectors can bind to it; every ``self.ui.<name>`` the widget code uses exists in the ``.ui``;
every connected slot is a method; every Slicer, Qt or CTK name (class, property, signal, Python
function) is one that Slicer 5.8 provides (``Testing/slicer_api.json``); the module file parses as
Python 3.9 (Slicer 5.8's Python). Each check is a function returning a list of problems, and the
tests at the end show on broken inputs that each one catches what it is meant to.
"""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = json.loads((ROOT / "Testing" / "slicer_api.json").read_text())
PANEL_MODULES = ["MedAISegmentation", "MedAIRegistration", "MedAIUncertainty"]
ALL_MODULES = ["MedAICommon", *PANEL_MODULES]
LIFECYCLE_METHODS = ["__init__", "setup", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose"]
FLOAT_WIDGETS = {
    "QDoubleSpinBox",
    "ctkSliderWidget",
    "ctkDoubleSpinBox",
    "ctkDoubleSlider",
    "qMRMLSliderWidget",
    "qMRMLSpinBox",
}
INT_WIDGETS = {"QSpinBox", "QSlider"}
BOUNDED_ONLY_WIDGETS = {"ctkSliderWidget", "qMRMLSliderWidget", "QSlider"}


# --- reading the .ui file -------------------------------------------------------------------------


@dataclass
class UiWidget:
    name: str
    cls: str
    properties: dict[str, ET.Element] = field(default_factory=dict)  # standard Qt properties
    dynamic: dict[str, str] = field(default_factory=dict)  # stdset="0" properties

    def text(self, prop: str) -> str | None:
        element = self.properties.get(prop)
        if element is None or len(element) == 0:
            return None
        return element[0].text or ""

    def number(self, prop: str) -> float | None:
        value = self.text(prop)
        return None if value is None else float(value)

    def stringList(self, prop: str) -> list[str]:
        element = self.properties.get(prop)
        return [] if element is None else [s.text or "" for s in element.iter("string")]


@dataclass
class UiFile:
    rootClass: str
    rootName: str
    className: str
    widgets: dict[str, UiWidget]
    layouts: list[str]
    customWidgets: dict[str, str]  # class -> extends
    connections: list[tuple[str, str, str, str]]  # sender, signal, receiver, slot


def parseUi(text: str) -> UiFile:
    """Read a Qt Designer file; raises ET.ParseError on malformed XML."""
    ui = ET.fromstring(text)
    root = ui.find("widget")
    widgets = {}
    for element in ui.iter("widget"):
        widget = UiWidget(element.get("name"), element.get("class"))
        for prop in element.findall("property"):
            if prop.get("stdset") == "0":
                widget.dynamic[prop.get("name")] = "".join(prop.itertext()).strip()
            else:
                widget.properties[prop.get("name")] = prop
        widgets[widget.name] = widget
    customWidgets = {cw.findtext("class"): cw.findtext("extends") for cw in ui.iter("customwidget")}
    connections = [
        tuple(c.findtext(tag) for tag in ("sender", "signal", "receiver", "slot")) for c in ui.iter("connection")
    ]
    return UiFile(
        rootClass=root.get("class"),
        rootName=root.get("name"),
        className=ui.findtext("class"),
        widgets=widgets,
        layouts=[layout.get("class") for layout in ui.iter("layout")],
        customWidgets=customWidgets,
        connections=connections,
    )


def boundWidgets(ui: UiFile) -> dict[str, list[UiWidget]]:
    """Parameter name -> the widgets whose SlicerParameterName names it."""
    bound: dict[str, list[UiWidget]] = {}
    for widget in ui.widgets.values():
        if "SlicerParameterName" in widget.dynamic:
            bound.setdefault(widget.dynamic["SlicerParameterName"], []).append(widget)
    return bound


# --- reading the module file ----------------------------------------------------------------------


@dataclass
class ParameterField:
    name: str
    baseType: str  # "float", "int", "str", "bool", or a vtkMRML class name
    validators: dict[str, list] = field(default_factory=dict)  # "Choice" -> [choices], "WithinRange" -> [lo, hi]
    default: object = None


def moduleConstants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = <literal> assignments."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return constants


def _literal(node: ast.AST, constants: dict[str, object]):
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return ast.literal_eval(node)


def parameterNodeClass(tree: ast.Module) -> ast.ClassDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return node
    return None


def parameterFields(tree: ast.Module) -> dict[str, ParameterField]:
    """The typed fields of the module's @parameterNodeWrapper class, read from the syntax tree."""
    cls = parameterNodeClass(tree)
    if cls is None:
        return {}
    constants = moduleConstants(tree)
    fields = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        annotation, validators = node.annotation, {}
        if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Annotated":
            elements = annotation.slice.elts
            annotation = elements[0]
            for call in elements[1:]:
                validators[call.func.id] = [_literal(arg, constants) for arg in call.args]
        baseType = annotation.id if isinstance(annotation, ast.Name) else ast.unparse(annotation)
        default = _literal(node.value, constants) if node.value is not None else None
        fields[node.target.id] = ParameterField(node.target.id, baseType, validators, default)
    return fields


def classDef(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def methodNames(cls: ast.ClassDef) -> set[str]:
    return {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


# --- the checks -----------------------------------------------------------------------------------


def widgetBindingProblems(ui: UiFile, fields: dict[str, ParameterField]) -> list[str]:
    """Widgets and parameter fields agree, as Slicer 5.8's parameterNodeWrapper connectors need."""
    problems = []
    bound = boundWidgets(ui)
    for parameter, widgets in sorted(bound.items()):
        if parameter not in fields:
            problems.append(f"widget {widgets[0].name} names parameter {parameter!r}, which is not a field")
        if len(widgets) > 1:
            problems.append(f"parameter {parameter!r} is bound to several widgets: {[w.name for w in widgets]}")
    for name, parameter in fields.items():
        if name not in bound:
            problems.append(f"parameter {name!r} has no widget (no SlicerParameterName {name!r} in the .ui)")
            continue
        problems += _connectorProblems(bound[name][0], parameter)
    return problems


def _connectorProblems(widget: UiWidget, parameter: ParameterField) -> list[str]:
    where = f"{widget.name} ({widget.cls}) for {parameter.name!r}"
    kind, choices = parameter.baseType, parameter.validators.get("Choice")
    withinRange = parameter.validators.get("WithinRange")
    if kind.startswith("vtkMRML"):
        if widget.cls != "qMRMLNodeComboBox":
            return [f"{where}: a node parameter needs a qMRMLNodeComboBox"]
        if widget.stringList("nodeTypes") != [kind]:
            return [f"{where}: nodeTypes {widget.stringList('nodeTypes')} differ from the field type {kind}"]
        return []
    if widget.cls in ("QComboBox", "ctkComboBox"):
        if kind not in ("str", "int", "float", "bool") or not choices:
            return [f"{where}: a combo box needs a str/int/float/bool field annotated with Choice([...])"]
        return (
            [f"{where}: default {parameter.default!r} is not a choice"] if parameter.default not in choices[0] else []
        )
    accepted = {
        "float": FLOAT_WIDGETS,
        "int": INT_WIDGETS,
        "bool": {"QCheckBox", "ctkCheckBox", "QPushButton"},
        "str": {"QLineEdit", "QLabel", "QTextEdit"},
    }.get(kind, set())
    if widget.cls not in accepted:
        return [f"{where}: Slicer 5.8 has no connector from {widget.cls} to {kind}"]
    problems = []
    if widget.cls in BOUNDED_ONLY_WIDGETS and not withinRange:
        problems.append(f"{where}: this widget needs a bounded field (Annotated[..., WithinRange(lo, hi)])")
    if withinRange:
        lo, hi = withinRange
        if (widget.number("minimum"), widget.number("maximum")) != (lo, hi):
            problems.append(
                f"{where}: .ui range {widget.number('minimum')}..{widget.number('maximum')} != WithinRange({lo}, {hi})"
            )
        if parameter.default is not None and not lo <= parameter.default <= hi:
            problems.append(f"{where}: default {parameter.default} outside WithinRange({lo}, {hi})")
    if parameter.name.endswith("Mm") and widget.text("suffix") != " mm":
        problems.append(f"{where}: a length in mm should show the suffix ' mm'")
    return problems


def _classChain(cls: str) -> list[str]:
    chain, classes = [], API["classes"]
    while cls in classes and cls not in chain:
        chain.append(cls)
        cls = classes[cls].get("base", "")
    return chain


def _knownProperties(cls: str) -> set[str]:
    return {p for c in _classChain(cls) for p in API["classes"][c].get("properties", [])}


def _knownSignalsAndSlots(cls: str) -> set[str]:
    return {s for c in _classChain(cls) for key in ("signals", "slots") for s in API["classes"][c].get(key, [])}


def uiApiProblems(ui: UiFile) -> list[str]:
    """Every class, property, node type and connection of the .ui exists in Slicer 5.8."""
    classes, problems = API["classes"], []
    for widget in ui.widgets.values():
        if widget.cls not in classes:
            problems.append(f"{widget.name}: class {widget.cls} is not in slicer_api.json")
            continue
        for prop in widget.properties:
            if prop not in _knownProperties(widget.cls):
                problems.append(f"{widget.name}: {widget.cls} has no property {prop!r}")
        for nodeType in widget.stringList("nodeTypes"):
            if nodeType not in classes:
                problems.append(f"{widget.name}: node type {nodeType} is not in slicer_api.json")
    problems += [f"layout class {c} is not in slicer_api.json" for c in ui.layouts if c not in classes]
    usedCustom = {w.cls for w in ui.widgets.values() if not w.cls.startswith("Q")}
    if usedCustom != set(ui.customWidgets):
        problems.append(f"<customwidgets> declares {sorted(ui.customWidgets)} but the widgets use {sorted(usedCustom)}")
    for sender, signal, receiver, slot in ui.connections:
        for name, member in ((sender, signal), (receiver, slot)):
            widget = ui.widgets.get(name)
            if widget is None or member not in _knownSignalsAndSlots(widget.cls):
                problems.append(f"connection {sender}.{signal} -> {receiver}.{slot}: {name}.{member} is unknown")
    nodeSelectors = {w.name for w in ui.widgets.values() if w.cls == "qMRMLNodeComboBox"}
    sceneReceivers = {r for s, sig, r, _ in ui.connections if sig == "mrmlSceneChanged(vtkMRMLScene*)"}
    problems += [
        f"{name} gets no mrmlSceneChanged connection (it would show no nodes)"
        for name in sorted(nodeSelectors - sceneReceivers)
    ]
    if ui.rootClass != "qMRMLWidget":
        problems.append(f"the top-level widget is a {ui.rootClass}, not a qMRMLWidget")
    return problems


def widgetCodeProblems(tree: ast.Module, widgetClassName: str, ui: UiFile) -> list[str]:
    """The widget code only uses widgets of its .ui and connects signals to methods that exist."""
    cls = classDef(tree, widgetClassName)
    if cls is None:
        return [f"no class {widgetClassName}"]
    methods, problems = methodNames(cls), []
    for node in ast.walk(cls):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            if node.attr not in ui.widgets:
                problems.append(f"line {node.lineno}: self.ui.{node.attr} is not a widget of the .ui")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            slots = []
            if node.func.attr == "connect" and len(node.args) == 2:
                signal = node.args[0]
                if isinstance(signal, ast.Constant) and not _signalKnown(signal.value):
                    problems.append(f"line {node.lineno}: signal {signal.value!r} is not in slicer_api.json")
                slots.append(node.args[1])
            elif node.func.attr in ("addObserver", "removeObserver") and len(node.args) >= 3:
                slots.append(node.args[2])
            for slot in slots:
                if (
                    isinstance(slot, ast.Attribute)
                    and isinstance(slot.value, ast.Name)
                    and slot.value.id == "self"
                    and slot.attr not in methods
                ):
                    problems.append(f"line {node.lineno}: slot self.{slot.attr} is not a method of {widgetClassName}")
    return problems


def _signalKnown(signal: str) -> bool:
    return any(signal in c.get("signals", []) for c in API["classes"].values())


def pythonApiProblems(tree: ast.Module) -> list[str]:
    """Every qt./ctk./slicer. name and every name imported from Slicer's Python packages exists in Slicer 5.8."""
    classes, python, problems = API["classes"], API["python"], []
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("slicer", "SampleData"):
            for alias in node.names:
                known = classes if node.module == "slicer" else python.get(node.module, [])
                if alias.name != "*" and alias.name not in known:
                    problems.append(f"line {node.lineno}: {node.module}.{alias.name} is not in slicer_api.json")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, name = node.value.id, node.attr
            if owner in ("qt", "ctk") and name not in classes:
                problems.append(f"line {node.lineno}: {owner}.{name} is not in slicer_api.json")
            if owner == "slicer" and name not in classes and name not in python["slicer"]:
                problems.append(f"line {node.lineno}: slicer.{name} is not in slicer_api.json")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "slicer"
        ):
            module = f"slicer.{node.value.attr}"
            if module in python and node.attr not in python[module]:
                problems.append(f"line {node.lineno}: {module}.{node.attr} is not in slicer_api.json")
    starNames = set(python["slicer.ScriptedLoadableModule"])
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if (
                    isinstance(base, ast.Name)
                    and base.id.startswith("ScriptedLoadable")
                    and base.id not in starNames | defined
                ):
                    problems.append(f"line {node.lineno}: base class {base.id} is not in slicer_api.json")
    return problems


def python39Problems(source: str) -> list[str]:
    """Slicer 5.8 runs Python 3.9: no newer syntax, and no ``X | Y`` types (evaluated by get_type_hints)."""
    try:
        tree = ast.parse(source, feature_version=(3, 9))
    except SyntaxError as error:
        return [f"not Python 3.9 syntax: {error}"]
    problems = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            annotations += [a.annotation for a in arguments if a.annotation] + ([node.returns] if node.returns else [])
        for annotation in annotations:
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                problems.append(f"line {node.lineno}: 'X | Y' in an annotation fails on Python 3.9; use Optional/Union")
    return problems


def moduleClassProblems(tree: ast.Module, moduleName: str) -> list[str]:
    """The Module class sets what Slicer shows, through _() so that it can be translated."""
    cls = classDef(tree, moduleName)
    if cls is None:
        return [f"no class {moduleName}"]
    assigned = {}
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self.parent":
                    assigned[target.attr] = node.value
    problems = [
        f"{moduleName} does not set parent.{a}"
        for a in ("title", "categories", "contributors", "helpText", "acknowledgementText")
        if a not in assigned
    ]
    for attribute in ("title", "helpText", "acknowledgementText"):
        value = assigned.get(attribute)
        if value is not None and not (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "_"):
            problems.append(f"parent.{attribute} is not passed through _() for translation")
    if "categories" in assigned and ast.literal_eval(assigned["categories"]) != ["MedAI"]:
        problems.append(f"categories are {ast.unparse(assigned['categories'])}, not ['MedAI']")
    return problems


def userStringProblems(tree: ast.Module) -> list[str]:
    """Texts shown to users (``.text``, ``.toolTip``) go through _()."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and target.attr in ("text", "toolTip") and node.value.value:
                    problems.append(
                        f"line {node.lineno}: {ast.unparse(target)} = {node.value.value!r} is not passed through _()"
                    )
    return problems


def lifecycleDocstringProblems(tree: ast.Module, widgetClassName: str) -> list[str]:
    """Each lifecycle method of the widget says in a one-line docstring when it is called."""
    cls = classDef(tree, widgetClassName)
    problems = []
    for method in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in LIFECYCLE_METHODS):
        docstring = ast.get_docstring(method) or ""
        if not docstring.startswith("Called") or "\n" in docstring.strip():
            problems.append(f"{widgetClassName}.{method.name}: docstring should be one line saying when it is called")
    missing = set(LIFECYCLE_METHODS) - methodNames(cls)
    problems += [f"{widgetClassName} has no {name}()" for name in sorted(missing)]
    return problems


def uiNameProblems(tree: ast.Module, ui: UiFile) -> list[str]:
    """Every ``ui.<name>`` and ``self.ui.<name>`` in a helper file names a widget of the module's .ui."""
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        isUi = (isinstance(owner, ast.Name) and owner.id == "ui") or (
            isinstance(owner, ast.Attribute) and owner.attr == "ui" and isinstance(owner.value, ast.Name)
        )
        if isUi and node.attr not in ui.widgets:
            problems.append(f"line {node.lineno}: ui.{node.attr} is not a widget of the .ui")
    return problems


def topLevelFileProblems(moduleDir: Path) -> list[str]:
    """Slicer loads every .py directly in a module folder as a module: each must define one named after it."""
    problems = []
    for path in sorted(moduleDir.glob("*.py")):
        tree = ast.parse(path.read_text())
        cls = classDef(tree, path.stem)
        bases = [ast.unparse(b) for b in cls.bases] if cls is not None else []
        if "ScriptedLoadableModule" not in bases:
            problems.append(
                f"{path.name} defines no ScriptedLoadableModule class {path.stem}; Slicer would fail to load it"
            )
    return problems


# --- tests on the real modules --------------------------------------------------------------------


def _load(moduleName: str):
    source = (ROOT / moduleName / f"{moduleName}.py").read_text()
    tree = ast.parse(source)
    uiPath = ROOT / moduleName / "Resources" / "UI" / f"{moduleName}.ui"
    ui = parseUi(uiPath.read_text()) if uiPath.exists() else None
    return source, tree, ui


@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_ui_and_parameter_node_agree(moduleName):
    _, tree, ui = _load(moduleName)
    fields = parameterFields(tree)
    assert fields, f"{moduleName}.py has no @parameterNodeWrapper class with typed fields"
    assert widgetBindingProblems(ui, fields) == []


@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_ui_uses_only_slicer_58_api(moduleName):
    _, _, ui = _load(moduleName)
    assert ui.className == ui.rootName == moduleName
    assert uiApiProblems(ui) == []
    for required in ("applyButton", "progressBar", "statusLabel"):
        assert required in ui.widgets, f"{moduleName}.ui has no {required}"


@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_widget_code_matches_its_ui(moduleName):
    _, tree, ui = _load(moduleName)
    assert widgetCodeProblems(tree, f"{moduleName}Widget", ui) == []
    assert lifecycleDocstringProblems(tree, f"{moduleName}Widget") == []
    loaded = [
        c.args[0].value
        for c in ast.walk(tree)
        if isinstance(c, ast.Call)
        and getattr(c.func, "attr", "") == "resourcePath"
        and isinstance(c.args[0], ast.Constant)
    ]
    assert loaded == [f"UI/{moduleName}.ui"]


@pytest.mark.parametrize("moduleName", ALL_MODULES)
def test_module_file_uses_only_slicer_58_api(moduleName):
    source, tree, _ = _load(moduleName)
    assert pythonApiProblems(tree) == []
    assert python39Problems(source) == []
    assert moduleClassProblems(tree, moduleName) == []
    assert userStringProblems(tree) == []
    for suffix in ("Logic", "Test"):
        assert classDef(tree, f"{moduleName}{suffix}") is not None, f"{moduleName}.py has no {moduleName}{suffix}"


@pytest.mark.parametrize("moduleName", ALL_MODULES)
def test_module_file_stays_small(moduleName):
    lines = len((ROOT / moduleName / f"{moduleName}.py").read_text().splitlines())
    assert lines <= 400, f"{moduleName}.py has {lines} lines; move code into {moduleName}Lib"


def test_common_module_is_hidden_and_has_no_panel():
    _, tree, ui = _load("MedAICommon")
    assert ui is None
    assigned = {
        ast.unparse(n.targets[0]): ast.unparse(n.value)
        for n in ast.walk(classDef(tree, "MedAICommon"))
        if isinstance(n, ast.Assign)
    }
    assert assigned["self.parent.hidden"] == "True"
    assert assigned["self.parent.widgetRepresentationCreationEnabled"] == "False"
    connected = [
        ast.unparse(c) for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "connect"
    ]
    assert "slicer.app.connect('startupCompleted()', registerSampleData)" in connected


@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_panel_modules_depend_on_common(moduleName):
    _, tree, _ = _load(moduleName)
    assigned = {
        ast.unparse(n.targets[0]): n.value for n in ast.walk(classDef(tree, moduleName)) if isinstance(n, ast.Assign)
    }
    assert ast.literal_eval(assigned["self.parent.dependencies"]) == ["MedAICommon"]


def _helperFiles(moduleName: str) -> list[Path]:
    """The Slicer-side helper package of a module (``<Module>Widgets/``), if it has one."""
    return sorted((ROOT / moduleName / f"{moduleName}Widgets").glob("*.py"))


@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_helper_package_uses_only_its_ui_and_slicer_58_api(moduleName):
    _, _, ui = _load(moduleName)
    for path in _helperFiles(moduleName):
        source = path.read_text()
        tree = ast.parse(source)
        where = path.relative_to(ROOT)
        problems = python39Problems(source)
        if "from __future__ import annotations" in source:  # annotations stay strings no one evaluates
            problems = [p for p in problems if "'X | Y'" not in p]
        assert problems == [], where
        assert pythonApiProblems(tree) == [], where
        assert userStringProblems(tree) == [], where
        assert uiNameProblems(tree, ui) == [], where
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            assert [p for p in widgetCodeProblems(tree, cls.name, ui) if "slot" in p] == [], (where, cls.name)


@pytest.mark.parametrize("moduleName", ALL_MODULES)
def test_module_folder_holds_only_loadable_module_files(moduleName):
    assert topLevelFileProblems(ROOT / moduleName) == []


def test_helper_checks_catch_unknown_widgets_and_stray_files(tmp_path):
    ui = parseUi(GOOD_UI)
    assert uiNameProblems(ast.parse("def f(ui):\n    ui.applyButton.enabled = True\n"), ui) == []
    assert uiNameProblems(ast.parse("def f(ui):\n    ui.runButton.enabled = True\n"), ui) == [
        "line 2: ui.runButton is not a widget of the .ui"
    ]
    assert uiNameProblems(ast.parse("class A:\n    def f(self):\n        self.ui.runButton.text = 1\n"), ui)
    (tmp_path / "Demo.py").write_text("class Demo(ScriptedLoadableModule):\n    pass\n")
    assert topLevelFileProblems(tmp_path) == []
    (tmp_path / "helpers.py").write_text("def helper():\n    pass\n")
    assert topLevelFileProblems(tmp_path) == [
        "helpers.py defines no ScriptedLoadableModule class helpers; Slicer would fail to load it"
    ]


# --- the checks catch what they are meant to ------------------------------------------------------

GOOD_MODULE = """
from typing import Annotated
import qt, slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import parameterNodeWrapper, WithinRange, Choice
from slicer.ScriptedLoadableModule import *
MODES = ["a", "b"]

@parameterNodeWrapper
class DemoParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    mode: Annotated[str, Choice(MODES)] = "a"
    smoothingMm: Annotated[float, WithinRange(0.0, 5.0)] = 1.0

class DemoWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
    def onApply(self):
        self.ui.applyButton.text = _("Cancel")
"""

GOOD_UI = """<ui version="4.0"><class>Demo</class>
 <widget class="qMRMLWidget" name="Demo"><layout class="QVBoxLayout" name="v">
  <item><widget class="qMRMLNodeComboBox" name="inputSelector">
   <property name="nodeTypes"><stringlist><string>vtkMRMLScalarVolumeNode</string></stringlist></property>
   <property name="SlicerParameterName" stdset="0"><string>inputVolume</string></property></widget></item>
  <item><widget class="QComboBox" name="modeComboBox">
   <property name="SlicerParameterName" stdset="0"><string>mode</string></property></widget></item>
  <item><widget class="ctkSliderWidget" name="smoothingSlider">
   <property name="minimum"><double>0.0</double></property><property name="maximum"><double>5.0</double></property>
   <property name="suffix"><string> mm</string></property>
   <property name="SlicerParameterName" stdset="0"><string>smoothingMm</string></property></widget></item>
  <item><widget class="QPushButton" name="applyButton"><property name="text"><string>Apply</string></property></widget></item>
 </layout></widget>
 <customwidgets>
  <customwidget><class>qMRMLWidget</class><extends>QWidget</extends></customwidget>
  <customwidget><class>qMRMLNodeComboBox</class><extends>QWidget</extends></customwidget>
  <customwidget><class>ctkSliderWidget</class><extends>QWidget</extends></customwidget>
 </customwidgets>
 <connections><connection><sender>Demo</sender><signal>mrmlSceneChanged(vtkMRMLScene*)</signal>
  <receiver>inputSelector</receiver><slot>setMRMLScene(vtkMRMLScene*)</slot></connection></connections>
</ui>"""


def _demo(ui=GOOD_UI, module=GOOD_MODULE):
    tree = ast.parse(module)
    parsed = parseUi(ui)
    return (
        widgetBindingProblems(parsed, parameterFields(tree))
        + uiApiProblems(parsed)
        + widgetCodeProblems(tree, "DemoWidget", parsed)
        + pythonApiProblems(tree)
        + userStringProblems(tree)
    )


def test_checks_pass_a_correct_demo_module():
    assert _demo() == []


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (lambda ui, m: (ui.replace("<string>mode</string>", "<string>modeTypo</string>"), m), "not a field"),
        (lambda ui, m: (ui.replace("<string>mode</string>", "<string>inputVolume</string>"), m), "several widgets"),
        (
            lambda ui, m: (ui, m.replace("    mode: Annotated", "    extraMm: float = 1.0\n    mode: Annotated")),
            "has no widget",
        ),
        (lambda ui, m: (ui, m.replace("Annotated[float, WithinRange(0.0, 5.0)]", "float")), "needs a bounded field"),
        (lambda ui, m: (ui.replace("<double>5.0</double>", "<double>9.0</double>"), m), "!= WithinRange"),
        (lambda ui, m: (ui.replace("<string> mm</string>", "<string> px</string>"), m), "suffix ' mm'"),
        (
            lambda ui, m: (ui, m.replace('Annotated[str, Choice(MODES)] = "a"', "str = 'a'")),
            "needs a str/int/float/bool",
        ),
        (lambda ui, m: (ui, m.replace("inputVolume: vtkMRMLScalarVolumeNode", "inputVolume: float")), "no connector"),
        (
            lambda ui, m: (
                ui.replace("<stringlist><string>vtkMRMLScalarVolumeNode", "<stringlist><string>vtkMRMLModelNode"),
                m,
            ),
            "nodeTypes",
        ),
        (lambda ui, m: (ui.replace('class="QComboBox"', 'class="QFancyBox"'), m), "QFancyBox is not in"),
        (lambda ui, m: (ui.replace('name="suffix"', 'name="unitSuffix"'), m), "no property 'unitSuffix'"),
        (
            lambda ui, m: (
                ui.replace("<customwidget><class>ctkSliderWidget</class><extends>QWidget</extends></customwidget>", ""),
                m,
            ),
            "customwidgets",
        ),
        (
            lambda ui, m: (ui.replace("<receiver>inputSelector</receiver>", "<receiver>modeComboBox</receiver>"), m),
            "mrmlSceneChanged",
        ),
        (lambda ui, m: (ui, m.replace("self.ui.applyButton.text", "self.ui.runButton.text")), "self.ui.runButton"),
        (lambda ui, m: (ui, m.replace("self.onApply)", "self.onApplyy)")), "not a method"),
        (lambda ui, m: (ui, m.replace('"clicked(bool)"', '"clickd(bool)"')), "signal 'clickd(bool)'"),
        (lambda ui, m: (ui, m.replace("import qt, slicer", "import qt, slicer\nx = qt.QFancyTimer")), "qt.QFancyTimer"),
        (
            lambda ui, m: (ui, m.replace("parameterNodeWrapper, WithinRange", "parameterNodeWrapper, Within")),
            "parameterNodeWrapper.Within",
        ),
        (lambda ui, m: (ui, m.replace('_("Cancel")', '"Cancel"')), "not passed through _()"),
    ],
)
def test_checks_catch_a_broken_demo_module(broken, expected):
    ui, module = broken(GOOD_UI, GOOD_MODULE)
    problems = _demo(ui, module)
    assert any(expected in p for p in problems), problems


def _uic() -> str | None:
    import shutil

    return shutil.which("uic") or next(
        (p for p in ("/usr/lib/qt5/bin/uic", "/usr/lib/x86_64-linux-gnu/qt5/bin/uic") if Path(p).is_file()), None
    )


@pytest.mark.skipif(_uic() is None, reason="needs Qt's uic (Debian package qtbase5-dev-tools)")
@pytest.mark.parametrize("moduleName", PANEL_MODULES)
def test_qt_uic_compiles_the_ui(moduleName, tmp_path):
    """Qt's own user-interface compiler reads the file (Designer's schema, custom widgets declared)."""
    import subprocess

    uiPath = ROOT / moduleName / "Resources" / "UI" / f"{moduleName}.ui"
    result = subprocess.run(
        [_uic(), str(uiPath), "-o", str(tmp_path / "ui.h")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "ui.h").read_text()
    for parameter in boundWidgets(parseUi(uiPath.read_text())):
        assert f'setProperty("SlicerParameterName", QVariant(QString::fromUtf8("{parameter}")))' in header


def test_malformed_ui_is_refused():
    with pytest.raises(ET.ParseError):
        parseUi(GOOD_UI.replace("</layout>", ""))


def test_python39_check_catches_newer_syntax():
    assert python39Problems("def f(x: int | None) -> None:\n    pass\n")
    assert python39Problems("match x:\n    case 1:\n        pass\n")
    assert python39Problems("def f(x: Optional[int]) -> None:\n    pass\n") == []


def test_lifecycle_check_catches_a_missing_docstring():
    source = "class W:\n" + "".join(f"    def {m}(self):\n        '''Called when.'''\n" for m in LIFECYCLE_METHODS)
    assert lifecycleDocstringProblems(ast.parse(source), "W") == []
    broken = source.replace("def enter(self):\n        '''Called when.'''", "def enter(self):\n        pass")
    assert lifecycleDocstringProblems(ast.parse(broken), "W") == [
        "W.enter: docstring should be one line saying when it is called"
    ]


# --- the job runner shared by the panels, driving a real worker process ---------------------------

JOB_RUNNER_SCRIPT = r"""
import json, sys, time, types

# Stand-ins for what only the Slicer desktop has: Qt's QTimer (ticked by hand below), the
# ScriptedLoadableModule base classes and the translation function. MedAICommonLib and the worker
# process are the real ones.
class QTimer:
    def setInterval(self, ms): pass
    def connect(self, signal, slot): self.signal, self.slot = signal, slot
    def start(self): self.active = True
    def stop(self): self.active = False

sys.modules["qt"] = types.SimpleNamespace(QTimer=QTimer)
base = types.ModuleType("slicer.ScriptedLoadableModule")
for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest"):
    setattr(base, name, type(name, (), {}))
base.__all__ = [n for n in vars(base) if n.startswith("Scripted")]
sys.modules["slicer.ScriptedLoadableModule"] = base
sys.modules["slicer.i18n"] = types.SimpleNamespace(tr=lambda text: text)
sys.path.insert(0, sys.argv[1])
import MedAICommon
from MedAICommonLib.jobs import WorkerProcess

Widget = types.SimpleNamespace
button, bar, label = Widget(text="Apply", toolTip="Run it.", enabled=True), Widget(value=0, visible=True), Widget(text="")
ended, seen = [], {"progress": set(), "labels": set()}
runner = MedAICommon.MedAIJobRunner(bar, label, lambda status: ended.append((status.state.value, status.result)))
record = {"barHiddenAtStart": bar.visible is False, "timerSignal": runner._timer.signal}

# The child pauses after its progress line so that a timer tick sees the job half done.
child = (
    "import time; from MedAICommonLib.jobs import reportProgress, reportResult; "
    "reportProgress(0.5, 'Half way'); time.sleep(1.0); reportResult({'objects': 3})"
)
runner.start(WorkerProcess(["-c", child]), button)
record.update(textWhileRunning=button.text, buttonWhileRunning=runner.button is button, barWhileRunning=bar.visible)
deadline = time.monotonic() + 60
while runner.running and time.monotonic() < deadline:
    runner._timer.slot()
    seen["progress"].add(bar.value)
    seen["labels"].add(label.text)
    time.sleep(0.02)
record.update(ended=ended[:], textAfter=button.text, toolTipAfter=button.toolTip, barAfter=bar.visible,
              sawHalfWay=50 in seen["progress"] and "Half way" in seen["labels"], timerActive=runner._timer.active)

runner.start(WorkerProcess(["-c", "import time; time.sleep(60)"]), button)
started = time.monotonic()
runner.cancel()
record.update(cancelSeconds=time.monotonic() - started, afterCancel=ended[-1], labelAfterCancel=label.text,
              runningAfterCancel=runner.running, textAfterCancel=button.text)

runner.start(WorkerProcess(["-c", "raise SystemExit('MedAIInputError: the image is empty')"]), button)
while runner.running:
    runner._timer.slot()
    time.sleep(0.02)
record.update(afterFailure=ended[-1], labelAfterFailure=label.text)
print(json.dumps(record))
"""


def test_job_runner_drives_a_real_worker_process():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", JOB_RUNNER_SCRIPT, str(ROOT / "MedAICommon")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["barHiddenAtStart"] and record["timerSignal"] == "timeout()"
    # While the job runs, its button is its Cancel button and the progress bar shows.
    assert record["textWhileRunning"] == "Cancel" and record["buttonWhileRunning"] and record["barWhileRunning"]
    assert record["sawHalfWay"]
    # When it ends, the module gets the result and the button is Apply again.
    assert record["ended"] == [["completed", {"objects": 3}]]
    assert (record["textAfter"], record["toolTipAfter"], record["barAfter"], record["timerActive"]) == (
        "Apply",
        "Run it.",
        False,
        False,
    )
    # Cancel kills the worker at once and says that nothing changed.
    assert record["afterCancel"] == ["cancelled", None] and record["cancelSeconds"] < 10
    assert not record["runningAfterCancel"] and record["textAfterCancel"] == "Apply"
    assert "nothing was added" in record["labelAfterCancel"]
    # A failing worker's last error line reaches the status label.
    assert record["afterFailure"][0] == "failed"
    assert "the image is empty" in record["labelAfterFailure"]
