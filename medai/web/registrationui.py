"""The widgets of the Registration tab (state keys ``reg*``, actions of :class:`RegistrationTab`)."""

from __future__ import annotations

from typing import Any

from .uploads import IMAGE_SUFFIXES
from .widgets import downloadButton, jobStatus, sectionTitle, testAttrs

__all__ = ["buildRegistrationUi"]

_METRICS = [
    {"title": "The preset's metric", "value": "preset"},
    {"title": "Mean squares (same modality)", "value": "mse"},
    {"title": "Normalised correlation", "value": "ncc"},
    {"title": "Mutual information (any modality)", "value": "mi"},
]
_VIEWS = [
    {"title": "Before", "value": "before"},
    {"title": "After", "value": "after"},
    {"title": "Jacobian", "value": "jacobian"},
]


def buildRegistrationUi(tab: Any) -> None:
    """Inputs, settings, run, metric curve, blend controls, QA numbers and download."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v

    sectionTitle("Fixed and moving volumes")
    for which, label in (("Fixed", "Fixed (stays)"), ("Moving", "Moving (aligned onto fixed)")):
        v.VSelect(
            label=label, items=("regSamples",), v_model=(f"reg{which}Sample",), density="compact",
            hide_details=True, classes="mb-1", **testAttrs(f"reg-{which.lower()}"),
        )  # fmt: skip
    v.VBtn("Load pair", size="small", click=tab.loadPair, **testAttrs("reg-load"))
    with html.Div(classes="d-flex"):
        for which in ("Fixed", "Moving"):
            v.VFileInput(
                label=f"or upload {which.lower()}", v_model=(f"reg{which}Upload", None), density="compact",
                accept=",".join(IMAGE_SUFFIXES), hide_details=True, classes="mt-2 mr-1", prepend_icon="",
            )  # fmt: skip
    html.Div("{{ regPairName }}", classes="text-caption my-1", **testAttrs("reg-pair"))

    sectionTitle("Preset")
    with html.Div(classes="d-flex"):
        v.VSelect(
            label="Transform", items=("regTransformTypes",), v_model=("regTransformType",), density="compact",
            hide_details=True, classes="mr-2", **testAttrs("reg-transform"),
        )  # fmt: skip
        v.VSelect(
            label="Metric", items=("regMetrics", _METRICS), v_model=("regMetric",), density="compact",
            hide_details=True,
        )  # fmt: skip
    v.VBtn(
        "Register", color="primary", block=True, classes="mt-2", click=tab.run, disabled=("regRunning",),
        **testAttrs("reg-run"),
    )  # fmt: skip
    jobStatus("reg", tab.runner.cancel)
    html.Div(v_html=("regCurveSvg",), classes="my-2", **testAttrs("reg-curve"))

    sectionTitle("Views")
    with v.VBtnToggle(
        v_model=("regView",), mandatory=True, density="compact", divided=True, variant="outlined",
        **testAttrs("reg-view"),
    ):  # fmt: skip
        for item in _VIEWS:
            v.VBtn(
                item["title"],
                value=item["value"],
                size="small",
                disabled=(f"!regDone && '{item['value']}' !== 'before'",),
            )
    v.VSlider(
        label="Moving opacity", v_model=("regOpacity",), min=0, max=1, step=0.05, density="compact",
        hide_details=True, classes="mt-1",
    )  # fmt: skip

    with html.Div(v_if="regDone"):
        sectionTitle("Quality")
        with v.VTable(density="compact", classes="text-caption", **testAttrs("reg-quality")):
            with html.Tbody(), html.Tr(v_for="row in regQuality", key="row.name"):
                html.Td("{{ row.name }}")
                html.Td("{{ row.value }}")
        downloadButton(tab.app.server, "Download transform (.h5)", "transform.h5", tab.download, "reg-download",
                       classes="mt-2")  # fmt: skip
