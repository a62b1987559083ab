"""``medai register`` command function: real files in, ITK transform, resampled image and report out."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medai.register_commands import addRegisterParser
from MedAICommonLib import sampledata
from MedAICommonLib.errors import MedAIInputError
from MedAICommonLib.geometry import lpsToRas
from MedAICommonLib.sceneio import saveNode

FIXED = "BrainProtonDensitySliceBorder20"
MOVING = "BrainProtonDensitySliceR10X13Y17"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medai")
    addRegisterParser(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args(["register", *argv])
    return arguments.run(arguments)


def _landmarks(scene, tmp_path, name, pointsLps):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    for point in lpsToRas(np.column_stack([pointsLps, np.zeros(len(pointsLps))])):
        node.AddControlPoint(*point)
    return str(saveNode(node, tmp_path / f"{name}.mrk.json"))


def test_rigid_2d_pair_writes_a_transform_that_simpleitk_reads(scene, tmp_path):
    known = sampledata.knownTransform(MOVING).transform
    fixedPoints = np.array([[60.0, 60.0], [110.5, 128.5], [180.0, 200.0], [40.0, 210.0]])
    movingPoints = np.array([known.TransformPoint(tuple(p)) for p in fixedPoints])
    status = _run(
        [
            str(sampledata.sampleDataPath(FIXED)),
            str(sampledata.sampleDataPath(MOVING)),
            "--transform", "rigid", "--metric", "mse",
            "--output-transform", str(tmp_path / "rigid.tfm"),
            "--resampled", str(tmp_path / "resampled.nrrd"),
            "--fixed-landmarks", _landmarks(scene, tmp_path, "fixedPoints", fixedPoints),
            "--moving-landmarks", _landmarks(scene, tmp_path, "movingPoints", movingPoints),
            "--report", str(tmp_path / "report.json"),
            "--jacobian", str(tmp_path / "jacobian.nrrd"),
        ]
    )  # fmt: skip
    assert status == 0
    transform = sitk.ReadTransform(str(tmp_path / "rigid.tfm"))
    assert transform.GetDimension() == 2
    errors = [
        np.linalg.norm(np.subtract(transform.TransformPoint(tuple(p)), q)) for p, q in zip(fixedPoints, movingPoints)
    ]
    assert max(errors) < 0.2
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meanTreMm"] < 0.2 and len(report["treMm"]) == 4
    assert report["foldingFraction"] == 0.0
    resampled = sitk.ReadImage(str(tmp_path / "resampled.nrrd"))
    fixed = sitk.ReadImage(str(sampledata.sampleDataPath(FIXED)))
    assert resampled.GetSize()[:2] == fixed.GetSize()[:2]
    assert np.allclose(resampled.GetOrigin()[:2], fixed.GetOrigin()[:2])
    # A rigid transform keeps volumes: its Jacobian determinant map is 1 everywhere.
    assert np.allclose(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "jacobian.nrrd"))), 1.0)


def test_bad_inputs_write_nothing(tmp_path):
    fixed, moving = str(sampledata.sampleDataPath(FIXED)), str(sampledata.sampleDataPath(MOVING))
    output = tmp_path / "out.tfm"
    with pytest.raises(MedAIInputError, match="does not exist"):
        _run([fixed, str(tmp_path / "missing.nrrd"), "--transform", "rigid", "--output-transform", str(output)])
    with pytest.raises(MedAIInputError, match="deformable result is written as"):
        _run([fixed, moving, "--transform", "deformable", "--output-transform", str(output)])
    with pytest.raises(MedAIInputError, match="projective result is written as"):
        _run([fixed, moving, "--transform", "projective", "--output-transform", str(output)])
    with pytest.raises(MedAIInputError, match="2D images only"):
        volume = str(sampledata.sampleDataPath("KmeansT1"))
        _run([volume, volume, "--transform", "projective", "--output-transform", str(tmp_path / "out.h5")])
    with pytest.raises(MedAIInputError, match="both"):
        _run([fixed, moving, "--transform", "rigid", "--output-transform", str(output), "--fixed-labels", fixed])
    assert list(tmp_path.iterdir()) == []
