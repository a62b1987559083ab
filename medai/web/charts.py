"""Small SVG charts drawn on the server and shown in the page (no plotting library in the browser)."""

from __future__ import annotations

import math
from html import escape

__all__ = ["lineChartSvg"]


def lineChartSvg(values: list[float], title: str, widthPx: int = 380, heightPx: int = 150) -> str:
    """An SVG line chart of ``values`` against their index, with the first and last value written.

    Args:
        values: the series (non-finite values are skipped).
        title: shown above the curve.
        widthPx, heightPx: size of the drawing in CSS pixels.

    Returns:
        SVG markup; an empty frame when there are fewer than two finite values.
    """
    points = [(index, value) for index, value in enumerate(values) if math.isfinite(value)]
    margin, top = 8, 22
    frame = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{widthPx}" height="{heightPx}" '
        f'viewBox="0 0 {widthPx} {heightPx}" data-points="{len(points)}">'
        f'<rect x="0" y="0" width="{widthPx}" height="{heightPx}" fill="#1e1e1e" stroke="#555"/>'
        f'<text x="{margin}" y="15" fill="#ddd" font-size="12">{escape(title)}</text>'
    )
    if len(points) < 2:
        return frame + "</svg>"
    low = min(value for _, value in points)
    high = max(value for _, value in points)
    span = (high - low) or 1.0
    last = points[-1][0] or 1
    plotWidth, plotHeight = widthPx - 2 * margin, heightPx - top - margin
    coordinates = " ".join(
        f"{margin + plotWidth * index / last:.1f},{top + plotHeight * (1 - (value - low) / span):.1f}"
        for index, value in points
    )
    caption = f"{points[0][1]:.4g} → {points[-1][1]:.4g} ({len(points)} iterations)"
    return (
        frame
        + f'<polyline fill="none" stroke="#4fc3f7" stroke-width="1.5" points="{coordinates}"/>'
        + f'<text x="{widthPx - margin}" y="15" fill="#aaa" font-size="11" text-anchor="end">{escape(caption)}</text>'
        + "</svg>"
    )
