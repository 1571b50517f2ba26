"""``reconstruct_duplicates``: one photo of N copies -> poses, shared textured mesh, light, and every output.

1. feature matches between the copies (:func:`.matching.match_instances`);
2. poses of the copies the matches connect: the upright model (:mod:`.upright`, copies on one plane, the
   default) or free structure from motion (:func:`.poses.estimate_poses`);
3. a quick reconstruction from those copies, against which the other copies are registered by
   render-and-compare (:mod:`.register`);
4. the shared object from all posed copies as views (:func:`.joint.reconstruct_shared_object`);
5. the outputs (:mod:`.outputs`), scored against ground truth when a synthetic scene's folder is given.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError, InputError
from ...run_state import RunClock
from ..multiview.config import MultiViewConfig, Pass1Config, Pass2Config, preset
from .inputs import DuplicatesInput
from .poses import PoseConfig
from .register import RegisterConfig


@dataclass
class DuplicatesConfig:
    """Settings of :func:`reconstruct_duplicates` (``--set section.key=value`` reaches every field)."""

    pose_model: str = "upright"
    """``upright`` (copies stand on one plane: a turn and a shift each, :mod:`.upright`) or ``free`` (any rigid
    pose, incremental structure from motion, :mod:`.sfm`). ``upright`` falls back to ``free`` when the copies'
    sizes do not reveal a plane."""
    pose: PoseConfig = field(default_factory=PoseConfig)
    """Feature matching (and, for ``free``, structure from motion) between the copies."""
    register: RegisterConfig = field(default_factory=RegisterConfig)
    """Render-and-compare registration of the copies the matches do not pose."""
    register_unposed: bool = False
    """Register the copies feature matching could not pose by render-and-compare (needs a plane: always with
    ``upright``). Off by default: against a reconstruction that never saw their side, copies turned far from
    the matched ones land at the wrong turn (benchmarks/duplicates.py: mean rotation error 55-66 degrees with
    it, 1.8-5.8 without; re-render PSNR over all masks 15-17 dB with it, 7-9 dB without)."""
    bootstrap_pass1: int = 150
    """Pass-1 steps of the quick reconstruction the unposed copies are registered against."""
    bootstrap_pass2: int = 60
    """Pass-2 steps of that reconstruction."""
    recon: MultiViewConfig = field(default_factory=lambda: recon_preset("default"))
    """The shared object's reconstruction (the multi-view pipeline's passes; ``train_resolution`` is unused)."""
    lr_pose: float = 0.001
    """Adam learning rate of the copies' pose corrections during the final reconstruction (radians and object
    units per step; 0 keeps the poses fixed). The first posed copy stays fixed."""
    extent: float = 1.0
    """Upright model: the object lies within this distance of its origin, in units where the median copy is
    about 1 wide. Copies seen from a narrow range of directions leave the visual hull open along their common
    view direction; this bounds it (0 = no bound)."""
    view_size: int = 128
    """Side in pixels of each copy's crop used as a training view."""
    crop_margin: float = 0.15
    """Margin around each copy's mask box in its crop, fraction of the box's longer side."""
    max_minutes: float = 0.0
    """Time budget of the whole run (0 = none); the reconstruction stops early and every output is still written."""


def recon_preset(name: str) -> MultiViewConfig:
    """The multi-view preset ``name`` for the shared object, without the hull's stereo carving: the copies' crops
    see the object from a narrow range of directions, and carving was not measured there (``--set
    recon.carving=stereo`` turns it on)."""
    return dataclasses.replace(preset(name), carving="none")


def bootstrap_config(cfg: DuplicatesConfig) -> MultiViewConfig:
    """A short version of ``cfg.recon`` for the registration stage (coarse grid, few steps, small textures)."""
    boot = copy.deepcopy(cfg.recon)
    boot.pass1 = Pass1Config(**{**vars(boot.pass1), "iterations": cfg.bootstrap_pass1,
                                "tet_resolution": min(boot.pass1.tet_resolution, 32)})
    boot.pass2 = Pass2Config(**{**vars(boot.pass2), "iterations": cfg.bootstrap_pass2, "texture_resolution": 256})
    return boot


def initial_poses(data: DuplicatesInput, cfg: DuplicatesConfig, log=print):
    """``(object_to_camera [N,4,4], posed [N], plane or None, R_ref, solver info, sparse points or None)``."""
    from .matching import match_instances
    from .poses import estimate_poses
    from .register import ground_plane

    if cfg.pose_model not in ("upright", "free"):
        raise InputError(f"pose_model must be upright or free; got {cfg.pose_model!r}.")
    pairs = match_instances(data.image, np.asarray(data.masks), data.intrinsics.K, cfg.pose.match)
    if cfg.pose_model == "upright":
        from .upright import upright_poses

        try:
            up = upright_poses(data, pairs)
            info = {"model": "upright", "up": up.up.tolist(), "plane_offset": up.plane_offset,
                    "reference": up.reference, "turns_deg": [None if np.isnan(t) else float(t) for t in up.turns_deg],
                    "pairs": [[i, j, th, sc] for i, j, th, sc in up.pair_turns]}
            return up.object_to_camera, up.posed, (up.up, up.plane_offset), \
                up.object_to_camera[up.reference, :3, :3], info, None
        except DataError as exc:
            log(f"warning: upright model not usable ({exc}); falling back to free structure from motion")
    res = estimate_poses(data, cfg.pose, pairs=pairs)
    o2c, posed = res.object_to_camera, res.posed
    info = {"model": "free", "reference": int(res.reference), "reprojection_rmse_px": res.reprojection_rmse_px,
            "pairs": [list(p) for p in res.pairs]}
    return o2c, posed, ground_plane(o2c, posed), o2c[res.reference, :3, :3], info, (res.points, res.point_colors)


def reconstruct_duplicates(data: DuplicatesInput, out: Path, cfg: DuplicatesConfig | None = None, gt=None,
                           progress: bool = True, log=print) -> dict:
    """Run every stage (module docstring) and write ``out``; returns the metrics.

    Args:
        data: photo, instance masks and intrinsics (:func:`.inputs.read_duplicates_input`).
        out: an existing, empty output folder.
        cfg: settings (default :class:`DuplicatesConfig`).
        gt: a scene folder as ``unrender synth --kind duplicates`` writes it (``camera.json`` + ``gt/``), or None.
        progress: show progress bars.
        log: where stage messages go.
    """
    from .instance_views import hull_views, instance_views
    from .joint import reconstruct_shared_object
    from .outputs import poses_document, write_outputs, write_points_ply
    from .register import register_unposed

    cfg = cfg or DuplicatesConfig()
    start = time.perf_counter()
    budget = cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    o2c, posed, plane, R_ref, info, points = initial_poses(data, cfg, log)
    info["posed_by_features"] = [bool(p) for p in posed]
    log(f"poses from feature matches: {int(posed.sum())} of {len(posed)} copies ({info['model']} model)")

    def rebuild(recon_cfg, limit, lr_pose=0.0):
        which = np.nonzero(posed)[0]
        views, _ = instance_views(data, o2c, which, cfg.view_size, cfg.crop_margin)
        hull = hull_views(data, o2c, which, margin=cfg.crop_margin)
        clock = RunClock(time.perf_counter() - start)
        clip = cfg.extent if info["model"] == "upright" and cfg.extent > 0 else None
        mesh, light, history, c2o = reconstruct_shared_object(views, hull, recon_cfg, out, clock, limit, progress,
                                                              lr_pose=lr_pose, clip_radius=clip)
        return mesh, light, history, which, np.linalg.inv(c2o.double().numpy())

    if cfg.register_unposed and plane is not None and not posed.all() and posed.sum() >= 1:
        mesh, light, *_ = rebuild(bootstrap_config(cfg), 0.3 * budget)
        o2c, posed = register_unposed(mesh, light, data, o2c, posed, plane, R_ref, cfg.register, cfg.view_size,
                                      cfg.crop_margin, log)
    mesh, light, history, which, refined = rebuild(cfg.recon, budget, cfg.lr_pose)
    o2c[which] = refined
    (out / "poses.json").write_text(json.dumps(poses_document(data, o2c, posed, info), indent=2) + "\n")
    if points is not None:
        write_points_ply(out / "points.ply", *points)
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
