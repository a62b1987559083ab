"""The Segmentation tab: a sample or uploaded volume, watershed or a model, evaluation, download.

Each run follows the logic's three steps: ``prepare*`` reads and checks the nodes on the event
loop, ``compute`` runs in a thread (:class:`~medai.web.jobs.WebJobRunner`), ``createNodes`` adds
the result on the event loop. The segment list, the object count and the evaluation numbers are
put into the state for the page; the output is shown over the input in every view.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .jobs import WebJobRunner, userMessage
from .segmentationui import buildSegmentationUi

__all__ = ["SegmentationTab", "installedSegmentationModels", "samplesOfKind"]

MAX_LISTED_SEGMENTS = 400


def installedSegmentationModels() -> list[str]:
    """Ids of the registry's segmentation networks whose weights are on this computer."""
    from MedAICommonLib.models import ModelRegistry, weightsPath

    installed = []
    try:
        cards = ModelRegistry.load().segmentationNetworks()
    except Exception:  # noqa: BLE001 - a broken registry means no model to offer, not a broken page
        return []
    for card in cards:
        try:
            if weightsPath(card).is_file():
                installed.append(card.id)
        except Exception:  # noqa: BLE001 - weights in a package that is not installed
            continue
    return installed


def samplesOfKind(*kinds: str) -> list[str]:
    """The sample data names of the given kinds (``volume``, ``segmentation``...), for the tabs' lists."""
    from MedAICommonLib.sampledata import sampleDataInfo, sampleDataNames

    return [name for name in sampleDataNames() if sampleDataInfo(name)["kind"] in kinds]


class SegmentationTab:
    """State, actions and UI of the Segmentation tab."""

    title = "Segmentation"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state
        self.runner = WebJobRunner(app.state, "seg")
        self.inputNode: Any = None
        self.outputNode: Any = None
        self.tableNode: Any = None
        self.referenceNode: Any = None
        models = installedSegmentationModels()
        self.state.update(
            {
                "segSamples": samplesOfKind("volume", "2D image"),
                "segSample": None,
                "segReferenceSamples": samplesOfKind("segmentation", "labelmap"),
                "segReferenceSample": None,
                "segVolumeName": "",
                "segMethod": "watershed",
                "segThreshold": "adaptive",
                "segDarkObjects": False,
                "segModels": models,
                "segModel": models[0] if models else None,
                "segSegments": [],
                "segSegmentCount": 0,
                "segResultName": "",
                "segEvaluationRows": [],
                "segInstances": None,
                "segInstanceLevel": True,
                "segUpload": None,
                "segReferenceUpload": None,
            }
        )
        self.state.change("segUpload")(self._onUpload)
        self.state.change("segReferenceUpload")(self._onReferenceUpload)

    def buildUi(self) -> None:
        buildSegmentationUi(self)

    def activate(self) -> None:
        """Show this tab's volume and result (the tab was selected)."""
        if self.inputNode is not None:
            self.app.showVolume(self.inputNode, fit=False)
            self.app.showOnly([self.outputNode], [])

    # --- input -----------------------------------------------------------------------------------

    def loadSample(self, name: str | None = None) -> None:
        """Load a sample volume as the input (replacing the previous input and its results)."""
        from MedAICommonLib.sampledata import loadSampleData

        name = name or self.state["segSample"]
        if not name:
            self.runner.say("", "Choose a sample volume first.")
            return
        try:
            node = loadSampleData(self.app.scene, name)
        except Exception as error:  # noqa: BLE001 - missing sample data is told in the page
            self.runner.say("", userMessage(error))
            return
        self.state["segSample"] = name
        self._setInput(node, f"Loaded sample {name}.")

    def _setInput(self, node: Any, message: str) -> None:
        self.app.removeNodes([self.inputNode, self.outputNode, self.tableNode])
        self.inputNode, self.outputNode, self.tableNode = node, None, None
        self.app.showVolume(node)
        size = node.GetImageData().GetDimensions()
        spacing = node.GetSpacing()
        self.state.update(
            {
                "segVolumeName": f"{node.GetName()}: {' x '.join(map(str, size))} voxels, "
                + f"{' x '.join(f'{s:.3g}' for s in spacing)} mm",
                "segSegments": [],
                "segSegmentCount": 0,
                "segResultName": "",
                "segEvaluationRows": [],
                "segInstances": None,
            }
        )
        self.runner.say(message)

    def _onUpload(self, segUpload: Any = None, **_: Any) -> None:
        from .uploads import loadUploadedVolume

        if not segUpload:
            return
        try:
            node = loadUploadedVolume(self.app.scene, segUpload)
        except Exception as error:  # noqa: BLE001 - bad uploads are told in the page
            self.runner.say("", userMessage(error))
        else:
            if node.IsA("vtkMRMLSegmentationNode"):
                self.app.removeNodes([node])
                self.runner.say("", "Upload an image to segment; a .seg.nrrd file can be a reference.")
            else:
                self.state["segSample"] = None
                self._setInput(node, f"Loaded {node.GetName()} (uploaded).")
        self.state["segUpload"] = None

    def _onReferenceUpload(self, segReferenceUpload: Any = None, **_: Any) -> None:
        from .uploads import loadUploadedVolume

        if not segReferenceUpload:
            return
        try:
            node = loadUploadedVolume(self.app.scene, segReferenceUpload, labelmap=True)
        except Exception as error:  # noqa: BLE001 - bad uploads are told in the page
            self.runner.say("", userMessage(error))
        else:
            self._setReference(node)
            self.runner.say(f"Reference {node.GetName()} loaded (uploaded).")
        self.state["segReferenceUpload"] = None

    def _setReference(self, node: Any) -> None:
        self.app.removeNodes([self.referenceNode])
        self.referenceNode = node
        self.app.showOnly([], [node])

    # --- methods ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Run the chosen method on the input volume."""
        if self.inputNode is None:
            self.runner.say("", "Load a sample or upload a volume first.")
            return
        if self.state["segMethod"] == "watershed":
            self._runWatershed()
        elif self.state["segMethod"] == "model":
            self._runModel()
        else:
            self.runner.say("", "Prompt segmentation (box or points on a slice) is not yet available in the web app.")

    def _runWatershed(self) -> None:
        from MedAISegmentationLib.logic import MedAISegmentationLogic

        try:
            job = MedAISegmentationLogic().prepareWatershed(
                self.inputNode,
                threshold=self.state["segThreshold"],
                darkObjects=bool(self.state["segDarkObjects"]),
                outputName=f"{self.inputNode.GetName()} objects",
            )
        except Exception as error:  # noqa: BLE001 - bad input is told in the page
            self.runner.say("", userMessage(error))
            return

        def finish(_result: Any) -> str:
            output = job.createNodes()
            self._showResult(output.outputNode, output.tableNode)
            return (
                f"Watershed: {output.objectCount} objects, object radius {output.objectRadiusMm:.2f} mm "
                f"({self.inputNode.GetName()})."
            )

        self.runner.run(job.compute, finish, "Watershed")

    def _runModel(self) -> None:
        model = self.state["segModel"]
        if not model:
            self.runner.say("", "No segmentation network is installed yet; use the watershed.")
            return

        def warmUp(progress: Any, cancelToken: Any) -> None:
            # Importing torch and MONAI takes seconds: done here so the server keeps answering.
            progress(0.0, f"loading {model}")
            import monai  # noqa: F401
            import torch  # noqa: F401

        def start(_result: Any) -> str | None:
            from MedAISegmentationLib.logic import MedAISegmentationLogic

            job = MedAISegmentationLogic().prepareModelSegmentation(self.inputNode, model, device="auto")

            def finish(_computed: Any) -> str:
                output = job.createNodes()
                self._showResult(output.segmentationNode, None)
                return f"Model {model}: {self.state['segSegmentCount']} segments in {output.seconds:.1f} s."

            self.runner.run(job.compute, finish, f"Model {model}")
            return None

        self.runner.run(warmUp, start, f"Model {model}")

    def _showResult(self, segmentationNode: Any, tableNode: Any) -> None:
        self.app.removeNodes([self.outputNode, self.tableNode])
        self.outputNode, self.tableNode = segmentationNode, tableNode
        segmentation = segmentationNode.GetSegmentation()
        if self.inputNode.GetImageData().GetDimensions()[2] > 1:
            segmentationNode.CreateClosedSurfaceRepresentation()
        segmentationNode.GetDisplayNode().SetOpacity2DFill(0.45)
        segments = []
        for index in range(min(segmentation.GetNumberOfSegments(), MAX_LISTED_SEGMENTS)):
            segment = segmentation.GetNthSegment(index)
            color = "#" + "".join(f"{round(255 * c):02x}" for c in segment.GetColor())
            segments.append({"name": segment.GetName(), "color": color})
        self.state.update(
            {
                "segSegments": segments,
                "segSegmentCount": segmentation.GetNumberOfSegments(),
                "segResultName": segmentationNode.GetName(),
                "segEvaluationRows": [],
                "segInstances": None,
            }
        )
        self.app.slicerApp.display_manager.set_node_visible_in_group(segmentationNode)

    # --- evaluation and download -----------------------------------------------------------------

    def evaluate(self) -> None:
        """Compare the last result with the chosen reference (sample or uploaded)."""
        from MedAICommonLib.sampledata import loadSampleData
        from MedAISegmentationLib.logic import MedAISegmentationLogic

        if self.outputNode is None:
            self.runner.say("", "Run a segmentation first; its result is compared with the reference.")
            return
        try:
            if self.state["segReferenceSample"]:
                self._setReference(loadSampleData(self.app.scene, self.state["segReferenceSample"]))
            if self.referenceNode is None:
                self.runner.say("", "Choose a reference sample or upload a reference label map first.")
                return
            job = MedAISegmentationLogic().prepareEvaluation(
                self.referenceNode, self.outputNode, instanceLevel=bool(self.state["segInstanceLevel"]),
                createTables=False,
            )  # fmt: skip
        except Exception as error:  # noqa: BLE001 - bad input is told in the page
            self.runner.say("", userMessage(error))
            return

        def finish(_result: Any) -> str:
            output = job.createNodes()
            report = output.report()
            self.state["segEvaluationRows"] = [_evaluationRow(row, report["volumeUnit"]) for row in report["segments"]]
            self.state["segInstances"] = _instanceSummary(report["instances"])
            return f"Evaluated {self.outputNode.GetName()} against {self.referenceNode.GetName()}."

        self.runner.run(job.compute, finish, "Evaluation")

    def download(self) -> Any:
        """The last result as a ``.seg.nrrd`` attachment (None and a message when there is none)."""
        from MedAICommonLib.sceneio import saveNode

        if self.outputNode is None:
            self.runner.say("", "Nothing to download yet: run a segmentation first.")
            return None
        with tempfile.TemporaryDirectory(prefix="medai-download-") as folder:
            path = saveNode(self.outputNode, Path(folder) / "result.seg.nrrd")
            content = Path(path).read_bytes()
        return self.app.attachment(content)


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _evaluationRow(row: dict, unit: str) -> dict:
    return {
        "segment": row["segment"],
        "dice": _number(row.get("dice")),
        "iou": _number(row.get("iou")),
        "hd95": _number(row.get("hausdorff95_mm"), 2),
        "assd": _number(row.get("average_surface_distance_mm"), 2),
        "volumes": f"{_number(row.get('reference_volume'), 0)} / {_number(row.get('prediction_volume'), 0)} {unit}",
    }


def _instanceSummary(instances: dict | None) -> str | None:
    if not instances:
        return None
    return (
        f"Objects: {instances['reference_count']} reference, {instances['prediction_count']} found, "
        f"{instances['matched']} matched at IoU {instances['iou_threshold']:g}; F1 {_number(instances['f1'])}, "
        f"precision {_number(instances['precision'])}, recall {_number(instances['recall'])}"
    )
