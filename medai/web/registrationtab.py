"""The Registration tab: fixed and moving volumes, a preset, a run with live metric curve, blend and QA.

The registration runs in a thread on private copies of the two volumes (a scene of its own that no
view observes), so the views keep rendering the page's scene meanwhile; the transform, the
resampled moving volume and the Jacobian map are copied into the page's scene when it ends. The
views blend the moving volume over the fixed one (foreground/background), before or after
registration, or show the Jacobian determinant map.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from .charts import lineChartSvg
from .jobs import WebJobRunner, userMessage
from .registrationui import buildRegistrationUi

__all__ = ["RegistrationTab", "TRANSFORM_TYPES"]

TRANSFORM_TYPES = ("translation", "rigid", "similarity", "affine", "bspline", "deformable")
DEFAULT_FIXED = "BrainProtonDensitySliceBorder20"
DEFAULT_MOVING = "BrainProtonDensitySliceShifted13x17y"
_METRIC_IN_MESSAGE = re.compile(r"(?:metric|LNCC) (-?[0-9.]+(?:e[-+]?[0-9]+)?)")


class RegistrationTab:
    """State, actions and UI of the Registration tab."""

    title = "Registration"

    def __init__(self, app: Any) -> None:
        from MedAICommonLib.sampledata import sampleDataInfo, sampleDataNames

        self.app = app
        self.state = app.state
        self.runner = WebJobRunner(app.state, "reg")
        self.fixedNode: Any = None
        self.movingNode: Any = None
        self.outputs: list = []
        self.resampledNode: Any = None
        self.jacobianNode: Any = None
        self.transform: Any = None
        self.metricValues: list[float] = []
        volumes = [n for n in sampleDataNames() if sampleDataInfo(n)["kind"] in ("volume", "2D image")]
        self.state.update(
            {
                "regSamples": volumes,
                "regFixedSample": DEFAULT_FIXED,
                "regMovingSample": DEFAULT_MOVING,
                "regTransformTypes": list(TRANSFORM_TYPES),
                "regTransformType": "rigid",
                "regMetric": "preset",
                "regPairName": "",
                "regView": "before",
                "regOpacity": 0.5,
                "regCurveSvg": lineChartSvg([], "Metric per iteration"),
                "regQuality": [],
                "regDone": False,
                "regFixedUpload": None,
                "regMovingUpload": None,
            }
        )
        self.state.change("regView", "regOpacity")(self._onViewChanged)
        self.state.change("regFixedUpload")(lambda regFixedUpload=None, **_: self._onUpload(regFixedUpload, "fixed"))
        self.state.change("regMovingUpload")(
            lambda regMovingUpload=None, **_: self._onUpload(regMovingUpload, "moving")
        )

    def buildUi(self) -> None:
        buildRegistrationUi(self)

    def activate(self) -> None:
        """Show this tab's blend (the tab was selected)."""
        if self.fixedNode is not None:
            self.app.showVolume(self.fixedNode, self.movingNode, float(self.state["regOpacity"]), fit=False)
            self._onViewChanged()

    # --- inputs ----------------------------------------------------------------------------------

    def loadPair(self) -> None:
        """Load the chosen fixed and moving samples and show them blended."""
        from MedAICommonLib.sampledata import loadSampleData

        names = self.state["regFixedSample"], self.state["regMovingSample"]
        if not all(names):
            self.runner.say("", "Choose a fixed and a moving sample first.")
            return
        try:
            fixed = loadSampleData(self.app.scene, names[0])
            moving = loadSampleData(self.app.scene, names[1])
        except Exception as error:  # noqa: BLE001 - missing sample data is told in the page
            self.runner.say("", userMessage(error))
            return
        self._setInputs(fixed, moving)

    def _onUpload(self, upload: Any, which: str) -> None:
        from .uploads import loadUploadedVolume

        if not upload:
            return
        try:
            node = loadUploadedVolume(self.app.scene, upload)
            if not node.IsA("vtkMRMLScalarVolumeNode"):
                self.app.removeNodes([node])
                raise ValueError("upload an image, not a segmentation")
        except Exception as error:  # noqa: BLE001 - bad uploads are told in the page
            self.runner.say("", userMessage(error))
        else:
            fixed, moving = (node, self.movingNode) if which == "fixed" else (self.fixedNode, node)
            self.app.removeNodes([self.fixedNode if which == "fixed" else self.movingNode])
            self._setInputs(fixed, moving, keep=True)
        self.state["regFixedUpload" if which == "fixed" else "regMovingUpload"] = None

    def _setInputs(self, fixed: Any, moving: Any, keep: bool = False) -> None:
        if not keep:
            self.app.removeNodes([self.fixedNode, self.movingNode])
        self._clearOutputs()
        self.fixedNode, self.movingNode = fixed, moving
        if fixed is None or moving is None:
            self.state["regPairName"] = f"{'fixed' if fixed is None else 'moving'} volume still missing"
            self.runner.say("Upload the other volume too.")
            return
        self.state.update({"regPairName": f"fixed {fixed.GetName()}, moving {moving.GetName()}", "regView": "before"})
        self.app.showVolume(fixed, moving, float(self.state["regOpacity"]))
        segmentations = self.app.scene.GetNodesByClass("vtkMRMLSegmentationNode")
        self.app.showOnly([], [segmentations.GetItemAsObject(i) for i in range(segmentations.GetNumberOfItems())])
        self.runner.say(f"Loaded fixed {fixed.GetName()} and moving {moving.GetName()}; the views blend them.")

    def _clearOutputs(self) -> None:
        self.app.removeNodes(self.outputs)
        self.outputs, self.resampledNode, self.jacobianNode, self.transform = [], None, None, None
        self.metricValues = []
        self.state.update({"regCurveSvg": lineChartSvg([], "Metric per iteration"), "regQuality": [], "regDone": False})

    # --- run -------------------------------------------------------------------------------------

    def run(self) -> None:
        """Register the moving volume onto the fixed one in a thread, with live progress and metric."""
        from MedAICommonLib.sceneio import createScene
        from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume
        from MedAIRegistrationLib.logic import MedAIRegistrationLogic

        if self.fixedNode is None or self.movingNode is None:
            self.runner.say("", "Load a fixed and a moving volume first.")
            return
        self._clearOutputs()
        self.state["regView"] = "before"
        # Copies in a scene of their own: the thread never touches a node that the views observe.
        private = createScene()
        fixed = createVolumeFromSitkImage(private, sitkImageFromVolume(self.fixedNode), self.fixedNode.GetName())
        moving = createVolumeFromSitkImage(private, sitkImageFromVolume(self.movingNode), self.movingNode.GetName())
        metric = None if self.state["regMetric"] == "preset" else self.state["regMetric"]
        transformType = self.state["regTransformType"]

        def compute(progress: Any, cancelToken: Any) -> Any:
            return MedAIRegistrationLogic().registerVolumes(
                fixed, moving, transformType=transformType, metric=metric, createResampledVolume=True,
                createJacobianVolume=True, progress=progress, cancelToken=cancelToken,
            )  # fmt: skip

        self.runner.run(compute, self._finish, f"Registration ({transformType})", onEvents=self._onProgressEvents)

    def _onProgressEvents(self, events: list) -> None:
        for _fraction, message in events:
            match = _METRIC_IN_MESSAGE.search(message or "")
            if match:
                self.metricValues.append(float(match.group(1)))
        self.state["regCurveSvg"] = lineChartSvg(self.metricValues, "Metric per iteration (live)")

    def _finish(self, result: Any) -> str:
        from MedAICommonLib.transforms import createTransformNodeFromSitkTransform, sitkTransformFromTransformNode
        from MedAICommonLib.volumes import createVolumeFromSitkImage, sitkImageFromVolume

        scene = self.app.scene
        name = self.movingNode.GetName()
        transformNode = createTransformNodeFromSitkTransform(
            scene, sitkTransformFromTransformNode(result.transformNode), f"{name} to {self.fixedNode.GetName()}"
        )
        self.outputs.append(transformNode)
        self.resampledNode = createVolumeFromSitkImage(
            scene, sitkImageFromVolume(result.resampledVolumeNode), f"{name} registered"
        )
        self.outputs.append(self.resampledNode)
        if result.jacobianVolumeNode is not None:
            self.jacobianNode = createVolumeFromSitkImage(
                scene, sitkImageFromVolume(result.jacobianVolumeNode), f"{name} Jacobian"
            )
            self.outputs.append(self.jacobianNode)
            _showAsColourMap(self.jacobianNode)
        self.transform = result.transform
        history = _metricHistory(result.tableNode)
        self.metricValues = history or self.metricValues
        quality = result.quality
        self.state.update(
            {
                "regCurveSvg": lineChartSvg(self.metricValues, "Metric per iteration"),
                "regQuality": _qualityRows(quality),
                "regDone": True,
                "regView": "after",
            }
        )
        self._onViewChanged()
        return (
            f"Registered in {quality['elapsedS']:.1f} s, {quality['iterations']} iterations; "
            f"folding {100 * quality['foldingFraction']:.3f} %."
        )

    # --- views and download ----------------------------------------------------------------------

    def _onViewChanged(self, **_: Any) -> None:
        if self.fixedNode is None:
            return
        opacity = float(self.state["regOpacity"])
        view = self.state["regView"]
        foreground = {"before": self.movingNode, "after": self.resampledNode, "jacobian": self.jacobianNode}.get(view)
        self.app.setForeground(foreground or self.movingNode, opacity)

    def download(self) -> Any:
        """The transform as an ITK ``.h5`` file (resampling convention, LPS), or None and a message."""
        import SimpleITK as sitk

        if self.transform is None:
            self.runner.say("", "Nothing to download yet: run the registration first.")
            return None
        with tempfile.TemporaryDirectory(prefix="medai-download-") as folder:
            path = Path(folder) / "transform.h5"
            sitk.WriteTransform(self.transform, str(path))
            content = path.read_bytes()
        return self.app.attachment(content)


def _showAsColourMap(volumeNode: Any) -> None:
    """Jacobian determinant in a rainbow from 0.5 (shrinking) to 1.5 (growing); 1 means no change."""
    display = volumeNode.GetDisplayNode()
    if display is None:
        volumeNode.CreateDefaultDisplayNodes()
        display = volumeNode.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeRainbow")
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.5, 1.5)


def _metricHistory(tableNode: Any) -> list[float]:
    if tableNode is None:
        return []
    column = tableNode.GetTable().GetColumnByName("metric")
    return [] if column is None else [column.GetValue(row) for row in range(column.GetNumberOfTuples())]


def _qualityRows(quality: dict) -> list[dict]:
    labels = (
        ("elapsedS", "Time", "{:.1f} s"),
        ("iterations", "Iterations", "{:d}"),
        ("finalMetric", "Final metric", "{:.4g}"),
        ("jacobianMin", "Jacobian min", "{:.3f}"),
        ("jacobianMax", "Jacobian max", "{:.3f}"),
        ("foldingFraction", "Folding", "{:.3%}"),
        ("meanDice", "Mean Dice", "{:.3f}"),
        ("meanTreMm", "Mean landmark error", "{:.2f} mm"),
        ("inverseConsistencyMm", "Inverse consistency", "{:.2f} mm"),
    )
    return [
        {"name": label, "value": form.format(quality[key])}
        for key, label, form in labels
        if quality.get(key) is not None
    ]
