"""The Uncertainty tab: MC dropout, test-time augmentation or an ensemble on the Segmentation tab's volume.

Runs :meth:`MedAIUncertaintyLogic.prepareUncertainty` (event loop; it loads the model), its
``compute`` in a thread and ``createNodes`` on the event loop, then shows the uncertainty map over
the volume with its colour range, the "Review" segment and the summary numbers. When the
uncertainty module or the model's weights are missing, the page says so.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .jobs import WebJobRunner, userMessage
from .segmentationtab import installedSegmentationModels, samplesOfKind
from .widgets import jobStatus, sectionTitle, testAttrs

__all__ = ["UncertaintyTab"]

_METHODS = [
    {"title": "Monte Carlo dropout", "value": "mc-dropout"},
    {"title": "Test-time augmentation", "value": "tta"},
    {"title": "Ensemble", "value": "ensemble"},
]


def _uncertaintyLogic() -> Any:
    try:
        from MedAIUncertaintyLib.logic import MedAIUncertaintyLogic
    except ImportError:
        return None
    return MedAIUncertaintyLogic() if hasattr(MedAIUncertaintyLogic, "estimateUncertainty") else None


class UncertaintyTab:
    """State, actions and UI of the Uncertainty tab."""

    title = "Uncertainty"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state
        self.runner = WebJobRunner(app.state, "unc")
        self.outputs: list = []
        models = installedSegmentationModels()
        self.state.update(
            {
                "uncAvailable": _uncertaintyLogic() is not None and bool(models),
                "uncModels": models,
                "uncModel": models[0] if models else None,
                "uncMethod": "tta",
                "uncSamples": 4,
                "uncSummary": [],
                "uncRange": "",
                "uncReferences": samplesOfKind("segmentation"),
                "uncReference": None,
                "uncCalibrationPng": "",
            }
        )
        self.referenceNode: Any = None

    def buildUi(self) -> None:
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        v.VAlert(
            v_if="!uncAvailable", type="info", density="compact", variant="tonal",
            text="Uncertainty estimation is not yet available here: it needs the uncertainty module and an "
            "installed segmentation network.", **testAttrs("unc-unavailable"),
        )  # fmt: skip
        with html.Div(v_if="uncAvailable"):
            html.Div("Runs on the volume of the Segmentation tab.", classes="text-caption")
            sectionTitle("Model and method")
            v.VSelect(
                label="Model", items=("uncModels",), v_model=("uncModel",), density="compact", hide_details=True,
                **testAttrs("unc-model"),
            )  # fmt: skip
            v.VSelect(
                label="Method", items=("uncMethods", _METHODS), v_model=("uncMethod",), density="compact",
                hide_details=True, classes="mt-1", **testAttrs("unc-method"),
            )  # fmt: skip
            v.VSlider(
                label="Samples", v_model=("uncSamples",), min=2, max=20, step=1, thumb_label=True,
                density="compact", hide_details=True, classes="mt-1",
            )  # fmt: skip
            v.VSelect(
                label="Reference for calibration (optional)", items=("uncReferences",), v_model=("uncReference",),
                clearable=True, density="compact", hide_details=True, classes="mt-1", **testAttrs("unc-reference"),
            )  # fmt: skip
            v.VBtn(
                "Estimate uncertainty", color="primary", block=True, classes="mt-2", click=self.run,
                disabled=("uncRunning",), **testAttrs("unc-run"),
            )  # fmt: skip
            jobStatus("unc", self.runner.cancel)
            with html.Div(v_if="uncRange", classes="my-2"):
                html.Div(
                    style="height: 10px; background: linear-gradient(to right, #000000, #ff0000, #ffff00, #ffffff);",
                )
                html.Div("{{ uncRange }}", classes="text-caption", **testAttrs("unc-range"))
            html.Img(
                v_if="uncCalibrationPng", src=("uncCalibrationPng",), style="width: 100%;",
                **testAttrs("unc-calibration"),
            )  # fmt: skip
            with v.VTable(density="compact", v_if="uncSummary.length", classes="text-caption"):
                with html.Tbody(), html.Tr(v_for="row in uncSummary", key="row.name"):
                    html.Td("{{ row.name }}")
                    html.Td("{{ row.value }}")

    def activate(self) -> None:
        """Show the Segmentation tab's volume with this tab's map and review segment (the tab was selected)."""
        volume = self.app.tabs["segmentation"].inputNode
        if volume is None:
            return
        self.app.showVolume(volume, fit=False)
        if self.outputs:
            self.app.setForeground(self.outputs[1], 0.5)
            self.app.showOnly([self.outputs[0]], [])

    def run(self) -> None:
        """Estimate the uncertainty of the chosen model on the Segmentation tab's volume."""
        logic = _uncertaintyLogic()
        volume = self.app.tabs["segmentation"].inputNode
        if logic is None or volume is None:
            self.runner.say("", "Load a volume in the Segmentation tab first." if logic else "Not yet available.")
            return
        model, method, samples = self.state["uncModel"], self.state["uncMethod"], int(self.state["uncSamples"])
        referenceName = self.state["uncReference"]

        def warmUp(progress: Any, cancelToken: Any) -> None:
            # Importing torch and MONAI takes seconds: done here so the server keeps answering.
            progress(0.0, f"loading {model}")
            import monai  # noqa: F401
            import torch  # noqa: F401

        def start(_result: Any) -> str | None:
            reference = self._reference(referenceName)
            # The reliability diagram is drawn by the logic into a file, then sent to the page as a data URL.
            chart = str(Path(tempfile.mkdtemp(prefix="medai-web-")) / "calibration.png") if reference else None
            job = logic.prepareUncertainty(
                volume, model, method=method, samples=samples, device="auto", referenceSegmentationNode=reference,
                chartPngPath=chart,
            )  # fmt: skip
            self.runner.run(job.compute, lambda _computed: self._show(job.createNodes()), "Uncertainty")
            return None

        self.runner.run(warmUp, start, "Uncertainty")

    def _reference(self, name: str | None) -> Any:
        """The chosen sample segmentation as a node (loaded once per name), or None."""
        from MedAICommonLib.sampledata import loadSampleData

        if not name:
            return None
        if self.referenceNode is None or self.referenceNode.GetName() != name:
            self.app.removeNodes([self.referenceNode])
            self.referenceNode = loadSampleData(self.app.scene, name)
            self.referenceNode.SetDisplayVisibility(False)  # only the review segment is shown
        return self.referenceNode

    def _show(self, output: Any) -> str:
        self.app.removeNodes(self.outputs)
        uncertainty = output.uncertaintyVolumeNode
        others = [node for node in output.volumes.values() if node is not uncertainty]
        self.outputs = [output.segmentationNode, uncertainty, *others, output.summaryTableNode]
        # The logic already gave the map MedAI's uncertainty colours (black, red, yellow, white from 0 to its
        # 99.5th percentile; zero transparent), as in the desktop: the legend shows that window.
        display = uncertainty.GetDisplayNode()
        low, high = float(display.GetWindowLevelMin()), float(display.GetWindowLevelMax())
        self.app.setForeground(uncertainty, 0.5)
        summary = [{"name": str(row.get("name", key)), "value": _text(row)} for key, row in enumerate(output.summary)]
        summary += [{"name": key, "value": f"{value:.3f}"} for key, value in output.metrics.items() if _isNumber(value)]
        chart = ""
        if output.pngPath:
            chart = "data:image/png;base64," + base64.b64encode(Path(output.pngPath).read_bytes()).decode("ascii")
            shutil.rmtree(Path(output.pngPath).parent, ignore_errors=True)
        self.state.update(
            {
                "uncSummary": summary,
                "uncRange": f"{uncertainty.GetName()}: {low:.3g} (black) to {high:.3g} (white)",
                "uncCalibrationPng": chart,
            }
        )
        return f"Uncertainty ({self.state['uncMethod']}) in {output.seconds:.1f} s; review segment added."


def _isNumber(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(row: dict) -> str:
    try:
        return ", ".join(f"{k} {v:.3g}" if _isNumber(v) else f"{k} {v}" for k, v in row.items() if k != "name")
    except Exception as error:  # noqa: BLE001 - a summary row that does not format must not hide the result
        return userMessage(error)
