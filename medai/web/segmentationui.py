"""The widgets of the Segmentation tab (state keys ``seg*``, actions of :class:`SegmentationTab`)."""

from __future__ import annotations

from typing import Any

from .uploads import IMAGE_SUFFIXES, MAX_UPLOAD_MB
from .widgets import downloadButton, jobStatus, sectionTitle, testAttrs

__all__ = ["buildSegmentationUi"]

_METHODS = [
    {"title": "Watershed (touching objects)", "value": "watershed"},
    {"title": "Model (shipped network)", "value": "model"},
    {"title": "Prompt (box or points)", "value": "prompt"},
]


def buildSegmentationUi(tab: Any) -> None:
    """Input, method, run, segment list, evaluation and download sections."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v

    server = tab.app.server
    sectionTitle("Volume")
    with html.Div(classes="d-flex align-center"):
        v.VSelect(
            label="Sample volume", items=("segSamples",), v_model=("segSample",), density="compact",
            hide_details=True, classes="mr-2", **testAttrs("seg-sample"),
        )  # fmt: skip
        v.VBtn("Load", size="small", click=tab.loadSample, **testAttrs("seg-load"))
    v.VFileInput(
        label=f"or upload an image (max {MAX_UPLOAD_MB} MB)", v_model=("segUpload", None), density="compact",
        accept=",".join(IMAGE_SUFFIXES), hide_details=True, classes="mt-2", **testAttrs("seg-upload"),
        prepend_icon="mdi-upload",
    )  # fmt: skip
    html.Div("{{ segVolumeName }}", classes="text-caption my-1", **testAttrs("seg-volume"))

    sectionTitle("Method")
    v.VSelect(
        items=("segMethods", _METHODS), v_model=("segMethod",), density="compact", hide_details=True,
        **testAttrs("seg-method"),
    )  # fmt: skip
    with html.Div(v_if="segMethod === 'watershed'", classes="d-flex align-center mt-1"):
        v.VSelect(
            label="Foreground", items=("['adaptive', 'otsu']",), v_model=("segThreshold",), density="compact",
            hide_details=True, classes="mr-2",
        )  # fmt: skip
        v.VCheckbox(label="Dark objects", v_model=("segDarkObjects",), density="compact", hide_details=True)
    v.VAlert(
        v_if="segMethod === 'model' && !segModels.length", type="info", density="compact", variant="tonal",
        classes="mt-1", text="No segmentation network is installed yet; use the watershed.",
    )  # fmt: skip
    v.VSelect(
        v_if="segMethod === 'model' && segModels.length", label="Model", items=("segModels",), v_model=("segModel",),
        density="compact", hide_details=True, classes="mt-1",
    )  # fmt: skip
    v.VAlert(
        v_if="segMethod === 'prompt'", type="info", density="compact", variant="tonal", classes="mt-1",
        text="Prompt segmentation (a box or points on a slice) is not yet available in the web app; "
        "use the Slicer desktop or 'medai segment prompt'.",
    )  # fmt: skip
    v.VBtn(
        "Run", color="primary", block=True, classes="mt-2", click=tab.run, disabled=("segRunning",),
        **testAttrs("seg-run"),
    )  # fmt: skip
    jobStatus("seg", tab.runner.cancel)

    with html.Div(v_if="segSegmentCount > 0"):
        sectionTitle("Segments")
        html.Div("{{ segResultName }}: {{ segSegmentCount }} segments", classes="text-body-2", **testAttrs("seg-count"))
        with html.Div(style="max-height: 150px; overflow-y: auto;", classes="d-flex flex-wrap"):
            with html.Div(
                v_for="segment in segSegments", key="segment.name", classes="d-flex align-center mr-3 text-caption",
                **testAttrs("seg-segment"),
            ):  # fmt: skip
                html.Span(
                    style=("{ background: segment.color, width: '10px', height: '10px', display: 'inline-block', "
                           "marginRight: '4px', borderRadius: '2px' }",),
                )  # fmt: skip
                html.Span("{{ segment.name }}")
        downloadButton(server, "Download .seg.nrrd", "segmentation.seg.nrrd", tab.download, "seg-download",
                       classes="mt-2")  # fmt: skip

    sectionTitle("Evaluation against a reference")
    v.VSelect(
        label="Reference sample", items=("segReferenceSamples",), v_model=("segReferenceSample",), clearable=True,
        density="compact", hide_details=True, **testAttrs("seg-reference"),
    )  # fmt: skip
    v.VFileInput(
        label="or upload a reference label map", v_model=("segReferenceUpload", None), density="compact",
        accept=",".join(IMAGE_SUFFIXES), hide_details=True, classes="mt-2", prepend_icon="mdi-upload",
    )  # fmt: skip
    v.VCheckbox(
        label="Objects (match each object by IoU)", v_model=("segInstanceLevel",), density="compact",
        hide_details=True,
    )  # fmt: skip
    v.VBtn(
        "Evaluate", block=True, click=tab.evaluate, disabled=("segRunning || segSegmentCount === 0",),
        **testAttrs("seg-evaluate"),
    )  # fmt: skip
    html.Div("{{ segInstances }}", v_if="segInstances", classes="text-body-2 my-1", **testAttrs("seg-instances"))
    with v.VTable(density="compact", v_if="segEvaluationRows.length", classes="text-caption", **testAttrs("seg-table")):
        with html.Thead(), html.Tr():
            for header in ("Segment", "Dice", "IoU", "HD95 mm", "ASSD mm", "Ref / pred"):
                html.Th(header)
        with html.Tbody(), html.Tr(v_for="row in segEvaluationRows", key="row.segment"):
            for key in ("segment", "dice", "iou", "hd95", "assd", "volumes"):
                html.Td(f"{{{{ row.{key} }}}}")
