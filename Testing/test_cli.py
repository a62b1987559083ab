"""The ``medai`` command line, run in-process with ``main([...])``, and the demo end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medai.cli import main
from MedAICommonLib import sampledata

CONTRACT = ("segment", "register", "uncertainty", "explain", "evaluate", "train")
PLANNED = (("train", "registration"),)  # learned registration: issue 7


def test_help_lists_every_command_of_the_contract(capsys):
    assert main(["--help"]) == 0
    helpText = capsys.readouterr().out
    for command in ("data", "demo", *CONTRACT):
        assert command in helpText


def test_data_list_shows_names_kinds_sizes_and_descriptions(capsys):
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = sampledata.sampleDataNames()
    assert len(lines) == len(names)
    for line, name in zip(lines, names):
        info = sampledata.sampleDataInfo(name)
        assert re.split(r"\s{2,}", line)[:2] == [name, info["kind"]]
        assert info["description"][:40] in line
        if info.get("size"):
            assert "x".join(map(str, info["size"])) in line


def test_data_path_prints_the_checked_file(capsys):
    assert main(["data", "path", "Colin27"]) == 0
    printed = capsys.readouterr().out.strip()
    assert Path(printed) == sampledata.sampleDataPath("Colin27") and Path(printed).is_file()


def test_unknown_sample_data_name_is_one_error_line_and_status_2(capsys):
    assert main(["data", "path", "NoSuchImage"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NoSuchImage" in lines[0]


@pytest.mark.parametrize("command", PLANNED)
def test_commands_of_later_versions_say_so_with_status_2(command, capsys, tmp_path):
    output = tmp_path / "out.nii.gz"
    assert main([*command, "image.nii.gz", "-o", str(output)]) == 2
    name = " ".join(command)
    assert capsys.readouterr().err.strip() == f"error: 'medai {name}' is not yet available in this version."
    assert not output.exists()


def test_usage_errors_exit_with_status_2(capsys):
    assert main([]) == 2
    assert main(["data"]) == 2
    assert main(["data", "path"]) == 2
    assert "usage: medai" in capsys.readouterr().err


def test_demo_into_a_file_is_refused_before_writing(tmp_path, capsys):
    blocker = tmp_path / "demo"
    blocker.write_text("not a folder")
    assert main(["demo", "--output", str(blocker)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "is a file" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"] and blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_demo_writes_a_scene_slicer_reloads_and_pictures(tmp_path, capsys):
    from MedAICommonLib.sceneio import loadScene
    from MedAICommonLib.volumes import arrayFromVolume

    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "checks passed" in printed and "FAIL" not in printed

    summary = json.loads((output / "summary.json").read_text())
    assert summary["passed"] and len(summary["checks"]) >= 8
    pictures = sorted(output.glob("*.png"))
    assert {p.name for p in pictures} >= {
        "colin27_aal.png",
        "rigid_before.png",
        "rigid_after.png",
        "head_ct_bone.png",
        "head_ct_bone_3d.png",
        "brain_unet.png",
        "brain_uncertainty.png",
        "brain_reliability.png",
        "brain_box_prompt.png",
        "registration_before.png",
        "registration_after.png",
    }
    for picture in pictures:
        pixels = np.asarray(Image.open(picture).convert("RGB"))
        assert pixels.shape[0] > 300 and pixels.std() > 20, picture.name  # a real image, not a flat one
    aal = np.asarray(Image.open(output / "colin27_aal.png").convert("RGB")).astype(int)
    tinted = (np.abs(aal[..., 0] - aal[..., 1]) > 40) | (np.abs(aal[..., 1] - aal[..., 2]) > 40)
    assert tinted.mean() > 0.05  # coloured atlas regions over the grey MRI

    scene = loadScene(output / "MedAIDemo.mrb")

    def node(name):
        found = scene.GetFirstNodeByName(name)
        assert found is not None, f"{name} is not in the reloaded scene"
        return found

    assert arrayFromVolume(node("Colin27")).shape == (181, 217, 181)
    assert node("Colin27AAL").GetSegmentation().GetNumberOfSegments() == 116
    assert node("KmeansT1Labels segments").GetSegmentation().GetNumberOfSegments() == 6
    assert node("NucleiMask2D segments").GetSegmentation().GetNumberOfSegments() == 125
    assert node("HeadCTBone").IsA("vtkMRMLSegmentationNode")
    transformNode = node("Known rigid (modeling, RAS)")
    assert node("Colin27 moved").GetTransformNodeID() == transformNode.GetID()
    assert node("Colin27 resampled back").GetTransformNodeID() is None
    fixed = node("Fixed landmarks")
    moved = node("Moving landmarks")
    for index in range(fixed.GetNumberOfControlPoints()):
        np.testing.assert_allclose(
            moved.GetNthControlPointPosition(index), fixed.GetNthControlPointPosition(index), atol=1e-3
        )
    for name in ("Brain (U-Net)", "Brain (box prompt)"):
        assert node(name).IsA("vtkMRMLSegmentationNode") and node(name).GetSegmentation().GetNumberOfSegments() >= 1
    assert node("Brain uncertainty").IsA("vtkMRMLScalarVolumeNode")
    movedSlice = node("BrainProtonDensitySliceR10X13Y17")
    assert scene.GetNodeByID(movedSlice.GetTransformNodeID()).IsA("vtkMRMLLinearTransformNode")
    # No view nodes were left behind by the pictures.
    assert scene.GetNodesByClass("vtkMRMLSliceCompositeNode").GetNumberOfItems() == 0
