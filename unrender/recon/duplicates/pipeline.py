"""``reconstruct_duplicates``: one photo of N copies -> poses, shared textured mesh, light, and every output.

1. poses of the copies from feature matches (:func:`.poses.estimate_poses`);
2. copies the matches could not pose are registered to the others (:mod:`.register`) when the posed copies
   show that they stand upright on one plane;
3. the shared object from the posed copies as views (:func:`.joint.reconstruct_shared_object`);
4. the outputs (:mod:`.outputs`), scored against ground truth when a synthetic scene's folder is given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...run_state import RunClock
from ..multiview.config import MultiViewConfig, preset
from .inputs import DuplicatesInput
from .poses import PoseConfig, estimate_poses


@dataclass
class DuplicatesConfig:
    """Settings of :func:`reconstruct_duplicates` (``--set section.key=value`` reaches every field)."""

    pose: PoseConfig = field(default_factory=PoseConfig)
    """Feature matching and structure from motion between the copies."""
    recon: MultiViewConfig = field(default_factory=lambda: preset("default"))
    """The shared object's reconstruction (the multi-view pipeline's passes; ``train_resolution`` is unused)."""
    view_size: int = 128
    """Side in pixels of each copy's crop used as a training view."""
    crop_margin: float = 0.15
    """Margin around each copy's mask box in its crop, fraction of the box's longer side."""
    register_unposed: bool = True
    """Register the copies feature matching could not pose by render-and-compare (:mod:`.register`)."""
    max_minutes: float = 0.0
    """Time budget of the whole run (0 = none); the reconstruction stops early and every output is still written."""


def reconstruct_duplicates(data: DuplicatesInput, out: Path, cfg: DuplicatesConfig | None = None, gt=None,
                           progress: bool = True) -> dict:
    """Run every stage (module docstring) and write ``out``; returns the metrics.

    Args:
        data: photo, instance masks and intrinsics (:func:`.inputs.read_duplicates_input`).
        out: an existing, empty output folder.
        cfg: settings (default :class:`DuplicatesConfig`).
        gt: a scene folder as ``unrender synth --kind duplicates`` writes it (``camera.json`` + ``gt/``), or None.
        progress: show progress bars.
    """
    from .instance_views import hull_views, instance_views
    from .joint import reconstruct_shared_object
    from .outputs import poses_document, write_outputs, write_points_ply

    cfg = cfg or DuplicatesConfig()
    start = time.perf_counter()
    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    res = estimate_poses(data, cfg.pose)
    o2c, posed = res.object_to_camera.copy(), res.posed.copy()
    which = np.nonzero(posed)[0]
    views, _ = instance_views(data, o2c, which, cfg.view_size, cfg.crop_margin)
    hull = hull_views(data, o2c, which, margin=cfg.crop_margin)
    clock = RunClock(time.perf_counter() - start)
    mesh, light, history = reconstruct_shared_object(views, hull, cfg.recon, out, clock, budget, progress)
    (out / "poses.json").write_text(json.dumps(poses_document(data, res, o2c, posed), indent=2) + "\n")
    write_points_ply(out / "points.ply", res.points, res.point_colors)
    extra = {}
    if gt is not None:
        from ...data.duplicates.synthesize import gt_object_to_camera
        from ...io.mesh_files import load_mesh
        from .gt_metrics import ground_truth_metrics

        gt = Path(gt)
        extra["ground_truth"] = str(gt)
        extra.update(ground_truth_metrics(mesh, o2c, posed, load_mesh(gt / "gt" / "mesh.obj"), gt_object_to_camera(gt)))
    torch.set_grad_enabled(True)
    return write_outputs(out, data, mesh, light, o2c, posed, history, time.perf_counter() - start, extra)
