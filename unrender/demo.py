"""``unrender demo``: synthesize the built-in scene and write a contact sheet of its views."""

from __future__ import annotations

from pathlib import Path

import torch

from .data.synth import prepare_output, synthesize_object
from .io.images import contact_sheet, read_image, write_png


def run_demo(out: Path, resolution: int = 256, views: int = 8, force: bool = False) -> Path:
    """Render the built-in procedural object from ``views`` views; return the contact sheet's path.

    The sheet shows the training views composited over a light grey background, so that the
    alpha channel is visible too.
    """
    out = prepare_output(Path(out), force)
    data = synthesize_object(out / "data", family="auto", views=views, resolution=resolution, seed=0)
    tiles = []
    for i in range(views):
        rgba = read_image(data / "train" / f"r_{i}.png")
        a = rgba[..., 3:]
        tiles.append(rgba[..., :3] * a + 0.85 * (1 - a))
    sheet = contact_sheet(tiles, columns=min(4, views))
    path = out / "contact_sheet.png"
    write_png(path, sheet.clamp(0, 1).to(torch.float32))
    return path
