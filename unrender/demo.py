"""``unrender demo``: synthesize the built-in object, reconstruct it with the ``fast`` preset, point at the report.

    OUT/data/               the synthetic dataset (NeRF-synthetic layout + gt/)
    OUT/contact_sheet.png   its training views
    OUT/recon/              the reconstruction (mesh/, light/, test/, metrics.json, report.html)

Takes about 2 minutes on a 2-core CPU at the defaults (128^2 images, 32 views).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .data.synth import prepare_output, synthesize_object
from .io.images import contact_sheet, read_image, write_png


def run_demo(out: Path, resolution: int = 128, views: int = 32, force: bool = False, overrides=(),
             progress: bool = True) -> Path:
    """Synthesize, reconstruct (preset ``fast`` + ``overrides``) and return the report's path."""
    from .recon.multiview import apply_overrides, preset, reconstruct

    cfg = apply_overrides(preset("fast"), list(overrides))  # bad overrides fail before any work
    out = prepare_output(Path(out), force)
    data = synthesize_object(out / "data", family="vase", views=views, resolution=resolution, seed=0)
    tiles = []
    for i in range(min(views, 8)):
        rgba = read_image(data / "train" / f"r_{i}.png")
        a = rgba[..., 3:]
        tiles.append(rgba[..., :3] * a + 0.85 * (1 - a))
    write_png(out / "contact_sheet.png", contact_sheet(tiles, columns=4).clamp(0, 1).to(torch.float32))
    recon = reconstruct(data, out / "recon", cfg, gt_mesh=data / "gt" / "mesh.obj", progress=progress)
    return recon / "report.html"
