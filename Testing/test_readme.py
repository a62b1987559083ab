"""The README's plain-Python and command-line examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(f"### {title}", 1)[1].split("\n#", 1)[0]


def test_plain_python_example_runs_and_writes_what_it_says(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", _section("From plain Python (no Slicer desktop)"), flags=re.DOTALL)
    assert len(code) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code[0], "README.md", "exec"), namespace)
    from MedAICommonLib import sceneio

    assert (tmp_path / "tissues.seg.nrrd").is_file()
    reloaded = sceneio.loadScene(tmp_path / "tissues.mrb")
    segmentations = reloaded.GetNodesByClass("vtkMRMLSegmentationNode")
    assert segmentations.GetNumberOfItems() == 1
    assert segmentations.GetItemAsObject(0).GetSegmentation().GetNumberOfSegments() >= 5
