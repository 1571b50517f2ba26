"""``report.html``: one self-contained page per run (images in ``report/`` beside it).

Shows the metrics table, the loss curves of both passes (inline SVG, log scale), the grid of test
inputs (top row) against renders (bottom row) over white, and a turntable GIF of the result.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...io.images import write_png


def _svg_curve(values: list[float], width: int = 520, height: int = 160, color: str = "#c33") -> str:
    vals = [v for v in values if v == v and v > 0]
    if len(vals) < 2:
        return "<p>(no data)</p>"
    logs = [math.log10(v) for v in vals]
    lo, hi = min(logs), max(logs)
    span = (hi - lo) or 1.0
    pts = " ".join(f"{width * i / (len(logs) - 1):.1f},{height - height * (y - lo) / span:.1f}"
                   for i, y in enumerate(logs))
    return (f'<svg width="{width}" height="{height + 20}" style="background:#fafafa">'
            f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{pts}"/>'
            f'<text x="4" y="{height + 15}" font-size="11">log10 loss {lo:.2f} .. {hi:.2f}, {len(vals)} steps</text>'
            f"</svg>")


def _write_gif(frames: torch.Tensor, path: Path) -> None:
    rgb = frames[..., :3] * frames[..., 3:] + (1 - frames[..., 3:])  # over white
    imgs = [Image.fromarray((f.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)) for f in rgb]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=80, loop=0)


def write_report(out: Path, metrics: dict, history: dict, grid, turntable_frames) -> Path:
    """Write ``out/report.html`` and its images in ``out/report/``; returns the page's path."""
    folder = out / "report"
    folder.mkdir(exist_ok=True)
    parts = ["<html><head><meta charset='utf-8'><title>unrender reconstruction</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style>",
             "</head><body><h1>unrender reconstruction</h1><h2>Metrics</h2><table>"]
    flat = dict(metrics)
    flat.update({f"geometry.{k}": v for k, v in flat.pop("geometry", {}).items()})
    for k, v in flat.items():
        parts.append(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>")
    parts.append("</table><h2>Loss</h2>")
    for name, vals in history.items():
        parts.append(f"<h3>{html.escape(name)}</h3>{_svg_curve(vals)}")
    if grid is not None:
        write_png(folder / "test_grid.png", grid)
        parts.append("<h2>Test views: input (top) vs render (bottom)</h2><img src='report/test_grid.png'>")
    if turntable_frames is not None and len(turntable_frames):
        _write_gif(turntable_frames, folder / "turntable.gif")
        parts.append("<h2>Turntable</h2><img src='report/turntable.gif'>")
    parts.append("</body></html>")
    page = out / "report.html"
    page.write_text("\n".join(parts))
    return page
