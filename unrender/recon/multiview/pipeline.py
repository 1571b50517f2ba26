"""``reconstruct(DATA, OUT)``: posed images with masks -> textured PBR mesh + environment light.

The script of the pipeline (each line a layer call):

1. read the train (and test) split of the dataset; decode the training views at ``train_resolution``;
2. carve the visual hull from the masks: the bounding box of the tet grid and the initial SDF;
3. pass 1 (:class:`.passes.Pass1`): DMTet + material field + light;
4. clean the mesh (drop small components, optional simplification to ``triangles``), unwrap with
   xatlas, bake the field into textures;
5. pass 2 (:class:`.passes.Pass2`): vertex offsets + textures + light;
6. write every output (:mod:`.outputs`).

Progress is shown with a bar; a checkpoint is written every ``checkpoint_minutes`` and at the end of
pass 1, and ``resume=True`` continues from it. ``max_minutes`` bounds the training time (60% for
pass 1): training stops early and all outputs are still written. Under a budget, the schedules (learning
rate, SDF regulariser weight) follow whichever of the step count and the clock is further along
(:func:`schedule_step`), so a pass cut short still ends with its learning rate decayed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ...errors import InputError
from ...geometry.dmtet import remove_small_components
from ...mesh import Mesh
from ...run_state import RunClock, atomic_torch_save, deterministic_kernels
from .config import MultiViewConfig, config_from_dict, config_to_dict
from .passes import Pass1, Pass2, padded_bounds
from .views import training_views

CHECKPOINT = "checkpoint/state.pt"
RUN_FILES = ("checkpoint", "mesh", "light", "test", "report", "metrics.json", "report.html", "config.json")
"""What a run writes in OUT (``--force`` removes exactly these)."""


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda; got {name!r}.")
    return torch.device(name)


def _prepare_out(out: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (out / CHECKPOINT).exists():
            raise InputError(f"--resume: {out / CHECKPOINT} does not exist; start a new run without --resume.")
        return
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} already holds files (a previous run?); choose another --out, pass --resume to "
                         f"continue it, or --force to overwrite it.")
    if force:  # remove what an earlier run wrote, so no stale checkpoint or render outlives it; keep other files
        import shutil

        for name in RUN_FILES:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _save_checkpoint(out: Path, state: dict) -> None:
    atomic_torch_save(state, out / CHECKPOINT)  # a kill mid-write leaves the previous checkpoint intact


def _state(stage: str, iteration: int, bounds, trainer, gen, clock, history) -> dict:
    return {"stage": stage, "iteration": iteration, "bounds": bounds, stage: trainer.state_dict(),
            "generator": gen.get_state(), "elapsed": clock.elapsed, "history": history}


def schedule_step(it: int, start: int, total: int, elapsed: float, began: float, limit: float) -> int:
    """The step a pass's schedules use at step ``it``: ``it`` itself, or more when the time limit will end the
    pass first, ``max(it, start + (total - start) * (elapsed - began) / (limit - began))`` (capped at
    ``total - 1``), where ``began`` is the clock when the pass (re)started at step ``start``.

    Example:
        >>> schedule_step(10, 0, 100, elapsed=30.0, began=0.0, limit=60.0)   # half the time gone at step 10
        50
        >>> schedule_step(10, 0, 100, elapsed=30.0, began=0.0, limit=float("inf"))
        10
    """
    if not math.isfinite(limit) or limit <= began:
        return it
    by_time = start + (total - start) * (elapsed - began) / (limit - began)
    return min(total - 1, max(it, int(by_time)))


def train_pass(stage: str, title: str, trainer, total: int, start: int, views, gen, clock, limit: float, out: Path,
           bounds, history: dict, cfg, progress: bool) -> None:
    """Steps ``start..total`` of one pass, with a progress bar, periodic checkpoints and the time limit."""
    from .progress import TrainingProgress

    last_save, began = time.perf_counter(), clock.elapsed
    with TrainingProgress(title, total, start, enabled=progress) as bar:
        for it in range(start, total):
            elapsed = clock.elapsed
            if elapsed > limit:
                break
            stats = trainer.step(views, schedule_step(it, start, total, elapsed, began, limit), gen)
            history[stage].append(stats["loss"])
            bar.update(stats)
            if time.perf_counter() - last_save > 60 * cfg.checkpoint_minutes:
                _save_checkpoint(out, _state(stage, it + 1, bounds, trainer, gen, clock, history))
                last_save = time.perf_counter()


def initial_shape(views, cfg: MultiViewConfig, dataset_bounds, clip_radius: float | None = None):
    """Visual hull of the training masks (opened by ``cfg.carving``) -> ``(padded bounds [2,3],
    sdf_fn, mesh)`` for the tet grid. ``clip_radius`` also removes everything farther than that from the origin
    (a prior on the object's extent where the views leave the hull open, e.g. all from one side)."""
    from ...geometry.inside import signed_distance
    from ..photo_carving import photo_carve
    from ..stereo_carving import stereo_carve
    from ..visual_hull import carve, estimate_bounds, field_surface

    if cfg.carving not in ("stereo", "photo", "none"):
        raise InputError(f"carving must be stereo, photo or none; got {cfg.carving!r}.")
    camera, masks = views.camera.to(device="cpu"), views.mask.cpu()
    if clip_radius is not None:  # the ball's box (a single view's frustum box is unbounded)
        box = torch.tensor([[-clip_radius] * 3, [clip_radius] * 3], dtype=torch.float32)
    else:
        box = dataset_bounds if dataset_bounds is not None else estimate_bounds(camera, masks)
    field = carve(camera, masks, box, cfg.hull_resolution)
    if clip_radius is not None:
        field.values = field.values * (field.centres().norm(dim=-1) <= clip_radius).reshape(field.values.shape)
    if not bool(field.values.max() > 0.5):
        raise InputError("the masks carve away everything (no point is inside every silhouette); check that the "
                         "cameras and masks belong together (pose convention, image order).")
    if cfg.carving == "photo":
        field = photo_carve(camera, views.color.cpu(), masks, field).field
    elif cfg.carving == "stereo":
        field = stereo_carve(camera, views.color.cpu(), masks, field, cfg.stereo).field
    hull = field_surface(field)
    lo, hi = hull.vertices.amin(0), hull.vertices.amax(0)
    bounds = padded_bounds(torch.stack([lo, hi]), 0.1)
    hv, hf = hull.vertices.double(), hull.faces

    def sdf_fn(points: torch.Tensor) -> torch.Tensor:
        return signed_distance(hv, hf, points.double()).to(points.dtype)

    return bounds, sdf_fn, hull


def bake_pass1(p1: Pass1, cfg: MultiViewConfig) -> Mesh:
    """Pass-1 mesh -> cleaned, (simplified,) unwrapped mesh with the field baked into textures."""
    from ...geometry.simplify import simplify_mesh
    from ...geometry.smoothing import taubin_smooth
    from ...geometry.uv_unwrap import unwrap_uv
    from ..bake import bake_material

    with torch.no_grad():
        m = p1.geometry.mesh()
        v, f = remove_small_components(m.vertices.detach().cpu(), m.faces.cpu(), 0.05)
        mesh = Mesh(taubin_smooth(v, f, cfg.pass1.taubin_iterations), f)
        if cfg.triangles > 0:
            mesh = simplify_mesh(mesh, cfg.triangles)
        mesh = unwrap_uv(mesh, resolution=cfg.pass2.texture_resolution)
        field = p1.field.cpu()
        mesh.material = bake_material(mesh, lambda x: field(x.float()), cfg.pass2.texture_resolution)
        p1.field.to(p1.device)
    return mesh


def reconstruct(data, out, cfg: MultiViewConfig | None = None, gt_mesh=None, resume: bool = False,
                force: bool = False, progress: bool = True) -> Path:
    """Run the whole pipeline (module docstring) and return ``out``.

    Args:
        data: dataset folder (any layout :func:`unrender.data.layouts.read_dataset` detects).
        out: output folder; refused when it holds files, unless ``force`` or ``resume``.
        cfg: :class:`MultiViewConfig` (default preset when None). Ignored with ``resume`` (the run's own
            ``config.json`` is used).
        gt_mesh: optional ground-truth mesh path for geometry metrics.
        resume: continue from ``out/checkpoint/state.pt``.
        force: overwrite a previous run in ``out``.
        progress: show a progress bar.

    Example:
        >>> reconstruct("data/mug", "runs/mug", preset("fast"))  # doctest: +SKIP
    """
    out = Path(out)
    _prepare_out(out, resume, force)
    state = None
    if resume:
        cfg = config_from_dict(json.loads((out / "config.json").read_text()))
        state = torch.load(out / CHECKPOINT, weights_only=True, map_location="cpu")
    cfg = cfg or MultiViewConfig()
    if not resume:
        (out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    with deterministic_kernels(cfg.deterministic):
        _train_and_write(data, out, cfg, state, gt_mesh, progress)
    return out


def _train_and_write(data, out: Path, cfg: MultiViewConfig, state: dict | None, gt_mesh, progress: bool) -> None:
    """Both passes from ``state`` (the checkpoint, or None for a fresh run), then every output."""
    from ...data.layouts import read_dataset
    from .outputs import write_outputs

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train = read_dataset(data, "train")
    views = training_views(train, cfg.train_resolution, device)
    clock = RunClock(state["elapsed"] if state else 0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = state["history"] if state else {"pass1": [], "pass2": []}
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes > 0 else float("inf")

    # ---------------------------------------------------------------- pass 1
    if state is None or state["stage"] == "pass1":
        if state is None:
            bounds, sdf_fn, _ = initial_shape(views, cfg, getattr(train, "bounds", None))
            start = 0
        else:
            bounds, start = state["bounds"], state["iteration"]
            sdf_fn = lambda p: p.norm(dim=-1) - 0.5  # noqa: E731 - replaced by the checkpoint's values
        p1 = Pass1(cfg, bounds, sdf_fn, device)
        if state is not None:
            p1.load_state_dict(state["pass1"])
            gen.set_state(state["generator"])
        train_pass("pass1", "pass 1: shape", p1, cfg.pass1.iterations, start, views, gen, clock, 0.6 * budget, out,
                   bounds, history, cfg, progress)
        mesh = bake_pass1(p1, cfg)
        p2 = Pass2(cfg, mesh, p1.light, device)
        start = 0
        _save_checkpoint(out, _state("pass2", 0, bounds, p2, gen, clock, history))
    else:
        bounds, start = state["bounds"], state["iteration"]
        p2 = Pass2.from_state_dict(cfg, state["pass2"], device)
        gen.set_state(state["generator"])

    # ---------------------------------------------------------------- pass 2
    train_pass("pass2", "pass 2: appearance", p2, cfg.pass2.iterations, start, views, gen, clock, budget, out,
               bounds, history, cfg, progress)
    _save_checkpoint(out, _state("pass2", cfg.pass2.iterations, bounds, p2, gen, clock, history))
    with torch.no_grad():
        final = p2.current_mesh()
        final = Mesh(final.vertices.detach().cpu(), final.faces.cpu(), uvs=final.uvs.cpu(),
                     uv_faces=final.uv_faces.cpu(), material=final.material.to(device="cpu"))
        for t in ("base_color", "orm", "normal"):
            setattr(final.material, t, getattr(final.material, t).detach())
    write_outputs(out, final, p2.light, data, cfg, history, clock.elapsed, gt_mesh=gt_mesh)
