"""Page pieces shared by the tabs: section titles, the progress bar with Cancel, messages, downloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["sectionTitle", "jobStatus", "downloadButton", "testAttrs"]


def testAttrs(name: str) -> dict:
    """Keyword arguments that give a widget the ``data-testid`` the browser tests look for."""
    return {"raw_attrs": [f'data-testid="{name}"']}


def sectionTitle(text: str) -> None:
    from trame.widgets import html

    html.Div(text, classes="text-subtitle-2 mt-3 mb-1 text-blue-lighten-3")


def jobStatus(prefix: str, cancel: Callable[[], None]) -> None:
    """Progress bar and Cancel button while ``<prefix>Running``; the message and the error below."""
    from trame.widgets import html
    from trame.widgets import vuetify3 as v

    with html.Div(classes="d-flex align-center my-2", v_if=(f"{prefix}Running",)):
        v.VProgressLinear(
            model_value=(f"{prefix}Progress",), height=14, color="light-blue", classes="flex-grow-1 mr-2",
            **testAttrs(f"{prefix}-progress"),
        )  # fmt: skip
        v.VBtn("Cancel", size="small", color="orange", click=cancel, **testAttrs(f"{prefix}-cancel"))
    html.Div(
        f"{{{{ {prefix}Message }}}}", classes="text-body-2 my-1", **testAttrs(f"{prefix}-message"),
        v_show=(f"{prefix}Message",),
    )  # fmt: skip
    v.VAlert(
        text=(f"{prefix}Error",), type="error", density="compact", variant="tonal", classes="my-1",
        v_show=(f"{prefix}Error",), **testAttrs(f"{prefix}-error"),
    )  # fmt: skip


def downloadButton(server: Any, text: str, fileName: str, callback: Callable[[], Any], testId: str, **kwargs: Any):
    """A button that asks the server for ``callback()``'s attachment and saves it as ``fileName``."""
    from trame.widgets import vuetify3 as v

    trigger = server.controller.trigger_name(callback)
    return v.VBtn(
        text,
        prepend_icon="mdi-download",
        size="small",
        click=f"utils.download('{fileName}', trigger('{trigger}'), 'application/octet-stream')",
        **testAttrs(testId),
        **kwargs,
    )
