"""MedAI in the browser: the three modules on real Slicer views, served with trame-slicer.

``medai web`` calls :func:`serve`; tests and scripts may build a :class:`MedAIWebApp` themselves.
Nothing here imports trame, VTK or Slicer until it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve", "MedAIWebApp"]


def __getattr__(name: str) -> Any:
    if name == "MedAIWebApp":
        from .app import MedAIWebApp

        return MedAIWebApp
    raise AttributeError(name)


def serve(host: str = "127.0.0.1", port: int = 8080, sample: str | None = "KmeansT1", **options: Any) -> None:
    """Start the web app and serve it until the process is stopped (Ctrl+C).

    Args:
        host: the address to bind; the default serves this computer only. Use ``0.0.0.0`` only
            behind an authenticating proxy: the app has no login.
        port: the TCP port (0: any free port).
        sample: the sample data item shown when the page opens (None: none).
        options: passed to ``trame``'s ``server.start``.
    """
    from .app import MedAIWebApp

    app = MedAIWebApp(sample=sample)
    app.server.start(host=host, port=port, open_browser=False, **options)
