"""``train_singleview(DATA, RUN, cfg)``: train a single-view predictor on a DVR collection.

The loop, one process or ``N`` under ``torchrun`` (:mod:`.distributed`):

1. prepare ``RUN`` (refused when it holds files, unless ``force`` or ``resume``), write ``config.json``;
2. seed, build the model (:func:`build_model`), read the train and val splits (:mod:`.batches`; the
   implicit model's SDF samples are computed once, by rank 0, into the cache);
3. for every epoch: each rank takes its shard of the epoch's seeded permutation of samples
   (``DistributedSampler``), batches of ``batch_size``; Adam steps on the model's losses
   (:func:`unrender.singleview.dibr_losses` / :func:`~unrender.singleview.implicit_losses`), DDP averaging the
   gradients; then rank 0 validates (:func:`validate`), appends a record to ``history.json``, redraws
   ``metrics.png``, writes ``checkpoint/last.pt`` and, when the validation metric improved, ``best.pt``;
4. ``checkpoint/last.pt`` is also written every ``checkpoint_minutes``; ``resume=True`` continues from it at
   the same epoch and batch (every random draw is a function of ``(seed, epoch, sample)``, so a resumed run
   sees the same batches as an uninterrupted one);
5. when ``max_minutes`` (summed over resumes) or ``max_steps`` runs out, every rank stops at the same step,
   the partial epoch is validated and checkpointed, and ``best.pt`` is kept.

Files written: ``RUN/config.json``, ``RUN/history.json``, ``RUN/metrics.png``, ``RUN/checkpoint/last.pt``
(model, optimiser, position, history), ``RUN/best.pt`` (what :func:`unrender.singleview.predict.load_predictor`
reads: model weights, config, image size, metrics), and for the implicit model ``RUN/sdf_cache/`` (unless
``implicit.sdf_cache`` points elsewhere). All writes are atomic (temporary file + rename).

Example:
    >>> result = train_singleview("coll", "runs/dibr", preset("fast", "dibr"))     # doctest: +SKIP
    >>> result.stopped, result.best_metric                                         # doctest: +SKIP
    ('completed', 'iou')
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import DataError, InputError
from ..run_state import RunClock, atomic_torch_save, atomic_write_text, deterministic_kernels
from .batches import CollectionSamples, DIBRSamples, ImplicitSamples, batch_cameras
from ..distributed import (DistributedContext, barrier, broadcast_error, init_distributed, max_over_ranks,
                          shard_sampler, shutdown, sum_over_ranks, unwrap_model, wrap_model)
from .history_plot import plot_history
from .mesh_validation import best_level, level_chamfers, mesh_chamfer
from .symmetry import detect_mirror_axis
from .weight_average import WeightAverage
from .train_config import (METRIC_HIGHER_IS_BETTER, SingleViewConfig, config_from_dict, config_to_dict, lr_factor,
                           preset, validate_config)

CHECKPOINT = "checkpoint/last.pt"
BEST = "best.pt"
HISTORY = "history.json"
PLOT = "metrics.png"
CONFIG = "config.json"
RUN_FILES = ("checkpoint", BEST, HISTORY, PLOT, CONFIG)
"""What a run writes in RUN (``force`` removes exactly these; a shared ``sdf_cache`` stays valid and is kept)."""
FORMAT = "unrender-singleview/1"

__all__ = ["TrainResult", "train_singleview", "build_model", "load_run_config", "make_datasets", "validate",
           "batch_losses", "predicted_mesh_chamfer", "preset", "CHECKPOINT", "BEST"]


@dataclass
class TrainResult:
    """What :func:`train_singleview` returns (on every rank).

    Attributes:
        run_dir: the run folder.
        model: the trained network (unwrapped from DDP) on the training device; on rank 0 ``best.pt`` may hold
            an earlier, better epoch.
        epochs_completed: whole epochs done (over all resumes).
        steps: optimiser steps done (over all resumes).
        stopped: ``"completed"``, ``"time budget"`` or ``"max_steps"``.
        best_metric, best_value: the validation metric that picks ``best.pt`` and its best value (NaN when no
            validation ran).
        history: one record per validation (``history.json``).
        elapsed: training seconds over all resumes.
        images_seen: training images processed by this call, summed over ranks.
    """

    run_dir: Path
    model: nn.Module
    epochs_completed: int
    steps: int
    stopped: str
    best_metric: str
    best_value: float
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    images_seen: int = 0


def build_model(cfg: SingleViewConfig) -> nn.Module:
    """The untrained network ``cfg`` describes (RGB input: the collection's images over their background).

    Example:
        >>> type(build_model(preset("fast", "implicit"))).__name__
        'ImplicitPredictor'
    """
    from . import DIBRPredictor, ImplicitPredictor

    if cfg.model == "dibr":
        d = cfg.dibr
        return DIBRPredictor(in_channels=3, subdivisions=d.subdivisions, template_radius=d.template_radius,
                             max_offset=d.max_offset, lighting=d.lighting, widths=tuple(d.widths),
                             feature_dim=d.feature_dim, hidden_dim=d.hidden_dim,
                             symmetry="none" if d.symmetry == "auto" else d.symmetry, dropout=d.dropout)
    if cfg.model == "implicit":
        m = cfg.implicit
        return ImplicitPredictor(in_channels=3, num_coarse_points=m.num_coarse_points, k_neighbours=m.k_neighbours,
                                 widths=tuple(m.widths), feature_dim=m.feature_dim, hidden_dim=m.hidden_dim,
                                 frequencies=m.frequencies, coarse_bound=m.mesh_bounds,
                                 pixel_channels=m.pixel_channels, pose_widths=tuple(m.pose_widths) or None)
    raise InputError(f"model must be dibr or implicit; got {cfg.model!r}.")


def load_run_config(run) -> SingleViewConfig:
    """The config of the run in ``run`` (``run/config.json``), e.g. to override fields before resuming.

    Example:
        >>> cfg = load_run_config("runs/dibr")           # doctest: +SKIP
    """
    path = Path(run) / CONFIG
    if not path.is_file():
        raise DataError(f"{path} does not exist; point at a folder written by `unrender train singleview`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} could not be read as JSON ({exc}); start a new run.") from None
    return config_from_dict(data, str(path))


def sdf_cache_dir(data: Path, run: Path, cfg: SingleViewConfig) -> Path:
    """Folder of the implicit model's cached SDF samples (see ``ImplicitConfig.sdf_cache``)."""
    where = cfg.implicit.sdf_cache
    return run / "sdf_cache" if where == "" else data / "sdf_cache" if where == "data" else Path(where)


def make_datasets(data, run, cfg: SingleViewConfig, ctx: DistributedContext | None = None
                  ) -> tuple[CollectionSamples, CollectionSamples, str]:
    """``(train, val, val_split)`` datasets for ``cfg.model``; validation uses the val split, or the train split
    (reported as ``val_split``) when the collection has no val objects. Rank 0 fills the SDF cache first."""
    data, run = Path(data), Path(run)
    common = {"seed": cfg.seed, "preload": cfg.preload}
    from ..data.collection import read_collection_index

    val_split = "val" if read_collection_index(data).objects("val") else "train"

    def make(split: str, **kw) -> CollectionSamples:
        if cfg.model == "dibr":
            return DIBRSamples(data, split, target_views=cfg.dibr.target_views, **common, **kw)
        m = cfg.implicit
        return ImplicitSamples(data, split, cache_dir=sdf_cache_dir(data, run, cfg), sdf_samples=m.sdf_samples,
                               query_points=m.query_points, surface_points=m.surface_points, query_mix=m.query_mix,
                               **common, **kw)

    jitter = {"input_shift": cfg.dibr.input_shift, "input_brightness": cfg.dibr.input_brightness,
              "background": cfg.background} if cfg.model == "dibr" else {}
    train = make("train", samples_per_object=cfg.samples_per_object, **jitter)
    truth = {"surface_points": VAL_CHAMFER_POINTS} if cfg.model == "dibr" and cfg.resolved_best_metric() == "chamfer" \
        else {}
    val = make(val_split, samples_per_object=1, fixed_views=True, max_samples=cfg.val_samples, **truth)
    if isinstance(train, ImplicitSamples):
        error = None
        if ctx is None or ctx.is_main:
            try:
                train.prepare_cache()
                val.prepare_cache()
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                error = exc
        if ctx is not None:
            broadcast_error(error, ctx)
            barrier(ctx)
            if not ctx.is_main:
                train.prepare_cache()
                val.prepare_cache()
        elif error is not None:
            raise error
    return train, val, val_split


# ------------------------------------------------------------------------------------------------ losses
def batch_losses(model: nn.Module, batch: dict, cfg: SingleViewConfig, size: tuple[int, int, float, float],
                 device: torch.device, topology=None, predictions: list | None = None) -> dict[str, torch.Tensor]:
    """The model's training losses on a collated batch of :mod:`.batches` items.

    Args:
        model: the (possibly DDP-wrapped) predictor.
        batch: collated items.
        cfg: the run's config (loss weights).
        size: ``(width, height, near, far)`` of the collection's cameras.
        device: where the model lives.
        topology: ``build_topology`` of the DIB-R template (reused across steps).
        predictions: when given, the model's output for the batch is appended to it (validation scores it).
    Returns:
        dict of scalar tensors with ``"total"``; DIB-R's also hold ``"iou"``.
    """
    from . import DIBRLossWeights, ImplicitLossWeights, dibr_losses, implicit_losses

    w, h, near, far = size
    images = batch["image"].to(device)
    if cfg.model == "dibr":
        d = cfg.dibr
        weights = DIBRLossWeights(silhouette=d.silhouette, color=d.color, laplacian=d.laplacian, flatten=d.flatten,
                                  silhouette_delta=d.silhouette_delta or None,
                                  silhouette_chamfer=d.silhouette_chamfer)
        cams = batch_cameras(batch, w, h, near, far, device)
        pred = model(images)
        if predictions is not None:
            predictions.append(pred)
        return dibr_losses(pred, cams, batch["masks"].to(device), batch["rgb"].to(device), weights, topology)
    m = cfg.implicit
    weights = ImplicitLossWeights(sdf=m.sdf, chamfer=m.chamfer, transformer=m.transformer, clamp=m.clamp,
                                  near_surface_weight=m.near_surface_weight, near_surface_band=m.near_surface_band)
    cams = batch_cameras(batch, w, h, near, far, device) if m.transformer > 0 else None
    out = model(images, batch["points"].to(device))
    losses = implicit_losses(out, batch["sdf"].to(device), batch["surface"].to(device), cams, weights)
    with torch.no_grad():
        target, c = batch["sdf"].to(out.sdf), m.clamp
        losses["sdf_l1"] = (out.sdf.clamp(-c, c) - target.clamp(-c, c)).abs().mean()
        losses["sign_accuracy"] = ((out.sdf < 0) == (target < 0)).to(out.sdf.dtype).mean()
    return losses


#: Points per surface of the validation Chamfer distance (DIB-R's protocol).
VAL_CHAMFER_POINTS = 2500


def predicted_mesh_chamfer(vertices: torch.Tensor, faces: torch.Tensor, truth: torch.Tensor, seed: int = 0
                           ) -> torch.Tensor:
    """Chamfer-L1 per sample, ``(mean_x d(x, Y) + mean_y d(y, X)) / 2`` (DIB-R's protocol, Euclidean distances),
    between ``P`` area-weighted samples ``X`` of each predicted mesh and its ground-truth points ``Y``.

    Args:
        vertices: ``[B,V,3]`` predicted vertices; ``faces``: ``[F,3]`` shared triangles.
        truth: ``[B,P,3]`` ground-truth surface points.
        seed: seed of the surface samples.
    Returns:
        ``[B]`` distances.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> from unrender.geometry.sdf_samples import sample_surface
        >>> b = box((1.0, 1.0, 1.0))
        >>> y = sample_surface(b.vertices, b.faces, 2000, torch.Generator().manual_seed(1))[0]
        >>> float(predicted_mesh_chamfer(b.vertices[None], b.faces, y[None])[0]) < 0.03  # 2,000 points' floor: 0.028
        True
    """
    gen = torch.Generator().manual_seed(int(seed))
    out = [mesh_chamfer(v, faces, y.detach().cpu().numpy(), gen) for v, y in zip(vertices, truth)]
    return torch.tensor(out, dtype=truth.dtype)


def validate(model: nn.Module, dataset: CollectionSamples, cfg: SingleViewConfig, device: torch.device,
             topology=None) -> dict[str, float]:
    """Validation metrics, averaged over ``dataset`` (sample-weighted), computed without gradients in eval mode.

    ``loss`` (the training objective) for both models; DIB-R: ``iou`` (rasterised coverage vs mask at 0.5,
    over the target views) and, when the items hold ground-truth ``surface`` points, ``chamfer``
    (:func:`predicted_mesh_chamfer`); implicit: ``sdf_l1`` = ``mean |clamp(pred) - clamp(target)|`` at the clamp
    ``delta``, ``sign_accuracy`` = fraction of queries on the right side of the surface, ``transformer`` = the
    spatial transformer's mean error per image coordinate (``[-1, 1]`` units; with a camera loss weight), and with
    ``best_metric=chamfer`` the ``chamfer`` of extracted meshes at the best of ``implicit.validation_levels``
    and that ``chamfer_level`` (:mod:`.mesh_validation`).
    """
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    keys = ("loss", "iou") if cfg.model == "dibr" else ("loss", "sdf_l1", "sign_accuracy")
    if cfg.model == "implicit" and cfg.implicit.transformer > 0:
        keys += ("transformer",)  # how far from the true projection the local features are sampled
    if cfg.model == "dibr" and getattr(dataset, "surface_points", 0) > 0:
        keys += ("chamfer",)
    m = cfg.implicit
    levels = (tuple(m.validation_levels) or (m.mesh_level,)) \
        if cfg.model == "implicit" and cfg.resolved_best_metric() == "chamfer" else ()
    level_sums = torch.zeros(len(levels), dtype=torch.float64)
    sums, count = dict.fromkeys(keys, 0.0), 0
    size = (dataset.width, dataset.height, dataset.near, dataset.far)
    try:
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False):
                predictions = []
                losses = batch_losses(net, batch, cfg, size, device, topology, predictions)
                if "chamfer" in keys:
                    pred = predictions[0]
                    losses["chamfer"] = predicted_mesh_chamfer(pred.vertices, pred.faces, batch["surface"].to(device),
                                                               seed=count).mean()
                if levels:
                    level_sums += level_chamfers(net, batch["image"].to(device), batch["surface"], levels,
                                                 m.validation_resolution, m.validation_coarse_resolution,
                                                 m.mesh_bounds, seed=count).sum(0)
                n = batch["image"].shape[0]
                for k in keys:
                    sums[k] += float(losses["total" if k == "loss" else k]) * n
                count += n
    finally:
        net.train(was_training)
    metrics = {k: v / max(count, 1) for k, v in sums.items()}
    if levels:
        metrics["chamfer"], metrics["chamfer_level"] = best_level(level_sums.numpy(), count, levels)
    return metrics


# ------------------------------------------------------------------------------------------------ run folder
def _prepare_run(out: Path, cfg: SingleViewConfig, resume: bool, force: bool, ctx: DistributedContext) -> None:
    """Refuse to overwrite (checked on every rank, before anyone writes), then rank 0 clears/creates ``out``."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise InputError(f"--resume: {out / CHECKPOINT} does not exist; start a new run without --resume.")
    elif out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; choose a folder.")
    elif out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out} already holds files (a previous run?); choose another --out, pass --resume to "
                         f"continue it, or --force to overwrite it.")
    barrier(ctx)
    error = None
    if ctx.is_main:
        try:
            if force and not resume:
                import shutil

                for name in RUN_FILES:
                    p = out / name
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n", out / CONFIG)
        except OSError as exc:
            error = InputError(f"cannot write the run folder {out} ({exc}); choose a writable --out.")
    broadcast_error(error, ctx)


def _best_payload(net: nn.Module, cfg: SingleViewConfig, train: CollectionSamples, metrics: dict, epoch: float,
                  step: int) -> dict:
    if "chamfer_level" in metrics:  # the iso-level the implicit model's meshes were judged at
        cfg = replace(cfg, implicit=replace(cfg.implicit, mesh_level=float(metrics["chamfer_level"])))
    return {"format": FORMAT, "model": cfg.model, "config": config_to_dict(cfg),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "image_size": [train.height, train.width], "background": float(cfg.background),
            "metrics": dict(metrics), "epoch": float(epoch), "step": int(step)}


def _progress_bar(total: int, done: int, enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[val]}"), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), disable=not enabled)
    task = bar.add_task("train", total=total, completed=done, loss="-", val="")
    return bar, task


# ------------------------------------------------------------------------------------------------ training
def train_singleview(data, out, cfg: SingleViewConfig | None = None, resume: bool = False, force: bool = False,
                     progress: bool = True, *, model: str | None = None, max_minutes: float | None = None,
                     seed: int | None = None) -> TrainResult:
    """Train ``cfg.model`` on the collection ``data`` into the run folder ``out`` (module docstring).

    Args:
        data: DVR collection folder (train and, when present, val split).
        out: run folder; refused when it holds files unless ``force`` (removes the previous run's files) or
            ``resume``.
        cfg: :class:`SingleViewConfig`; default: the default preset for DIB-R. With ``resume`` and ``cfg=None``
            the run's own ``config.json`` is used (pass a modified :func:`load_run_config` to change e.g.
            ``epochs``, ``max_minutes`` or ``lr``; changing ``batch_size``, ``samples_per_object`` or ``seed``
            changes which batches the rest of the run sees, and model fields must stay as they were).
        resume: continue from ``out/checkpoint/last.pt``.
        force: overwrite a previous run in ``out``.
        progress: show a progress bar (rank 0 only).
        model, max_minutes, seed: shortcuts that override those fields of ``cfg`` (``model`` alone selects the
            default preset of that model).
    Returns:
        :class:`TrainResult`.

    Example:
        >>> r = train_singleview("coll", "runs/x", apply_overrides(preset("fast"), ["epochs=2"]))   # doctest: +SKIP
    """
    data, out = Path(data), Path(out)
    if cfg is None:
        cfg = load_run_config(out) if resume else preset("default", model or "dibr")
    shortcuts = {"model": model, "max_minutes": max_minutes, "seed": seed}
    cfg = validate_config(replace(cfg, **{k: v for k, v in shortcuts.items() if v is not None}))
    if resume:
        saved = load_run_config(out)
        if saved.model != cfg.model:
            raise InputError(f"--resume: {out} holds a {saved.model} run; the config asks for {cfg.model}.")
        if cfg.dibr.symmetry == "auto":
            cfg = replace(cfg, dibr=replace(cfg.dibr, symmetry=saved.dibr.symmetry))
    elif cfg.model == "dibr" and cfg.dibr.symmetry == "auto":
        cfg = replace(cfg, dibr=replace(cfg.dibr, symmetry=detect_mirror_axis(data)))
    ctx = init_distributed(cfg.device)
    try:
        with deterministic_kernels(cfg.deterministic):
            return _train(data, out, cfg, resume, force, progress, ctx)
    finally:
        shutdown(ctx)


def _train(data: Path, out: Path, cfg: SingleViewConfig, resume: bool, force: bool, progress: bool,
           ctx: DistributedContext) -> TrainResult:
    _prepare_run(out, cfg, resume, force, ctx)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = ctx.device
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg).to(device)
    train, val, val_split = make_datasets(data, out, cfg, ctx)
    size = (train.width, train.height, train.near, train.far)
    # foreach: one multi-tensor update instead of a Python loop over ~60 tensors; on CPU, where it is not the
    # default, that loop cost 15% of a DIB-R step.
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    state = None
    if resume:
        state = torch.load(out / CHECKPOINT, weights_only=True, map_location=device)
        if state.get("format") != FORMAT:
            raise DataError(f"{out / CHECKPOINT} is not a single-view checkpoint of this version; start a new run.")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:  # the saved decay may differ from the config (rates are set per step)
                group["weight_decay"] = cfg.weight_decay
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(f"{out / CHECKPOINT} does not match the config's network ({str(exc)[:200]}); resume "
                            f"without changing model fields.") from None
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if average is not None and state is not None and "average" in state:  # else it starts from the current weights
        average.load_state_dict(state["average"])
    topology = None
    if cfg.model == "dibr":
        from ..render.antialias import build_topology

        topology = build_topology(model.faces)
    unused = (cfg.model == "dibr" and cfg.dibr.color == 0) or \
             (cfg.model == "implicit" and cfg.implicit.chamfer == 0)
    net = wrap_model(model, ctx, find_unused_parameters=unused)
    sampler = shard_sampler(train, ctx, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)

    epoch, batch_done, step = (state["epoch"], state["batch_in_epoch"], state["step"]) if state else (0, 0, 0)
    history = list(state["history"]) if state else []
    best_value = float(state["best_value"]) if state else math.nan
    sums = list(state["epoch_sums"]) if state else [0.0, 0.0, 0.0, 0.0]  # loss sum, samples, seconds, steps
    clock = RunClock(float(state["elapsed"]) if state else 0.0)
    elapsed = clock.elapsed  # agreed by every rank (checked after each step), so that they keep one schedule
    metric = cfg.resolved_best_metric()
    higher = METRIC_HIGHER_IS_BETTER[metric]
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes > 0 else math.inf
    stopped, seen = "completed", 0
    last_save = time.perf_counter()

    def checkpoint() -> None:
        atomic_torch_save({"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "epoch": epoch, "batch_in_epoch": batch_done, "step": step, "history": history,
                      "best_value": best_value, "epoch_sums": sums, "elapsed": clock.elapsed,
                      "config": config_to_dict(cfg),
                      **({"average": average.state_dict()} if average is not None else {})}, out / CHECKPOINT)

    bar, task = _progress_bar(cfg.epochs * steps_per_epoch, min(epoch * steps_per_epoch + batch_done,
                                                                 cfg.epochs * steps_per_epoch),
                              progress and ctx.is_main)
    with bar:
        while epoch < cfg.epochs:
            sampler.set_epoch(epoch)
            train.set_epoch(epoch)
            order = list(sampler)
            chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            loader = DataLoader(train, batch_sampler=chunks[batch_done:], num_workers=cfg.num_workers)
            ran, t_last = 0, time.perf_counter()
            for batch in loader:
                if cfg.max_steps and step >= cfg.max_steps:  # the same step on every rank: no need to agree
                    stopped = "max_steps"
                    break
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(cfg, step, cfg.epochs * steps_per_epoch, elapsed)
                losses = batch_losses(net, batch, cfg, size, device, topology)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                if average is not None:
                    average.update(model)
                n = batch["image"].shape[0]
                loss = float(losses["total"].detach())
                now = time.perf_counter()  # the step's time includes loading its batch
                sums, t_last = [sums[0] + loss * n, sums[1] + n, sums[2] + now - t_last, sums[3] + 1], now
                step, batch_done, ran, seen = step + 1, batch_done + 1, ran + 1, seen + n
                bar.update(task, advance=1, loss=f"{loss:.4f}", description=f"epoch {epoch + 1}/{cfg.epochs}")
                # Checked after the step, so that every call trains at least one step (and validates it);
                # ranks measure time separately and must stop at the same step.
                elapsed = max_over_ranks(clock.elapsed, ctx)
                if elapsed >= budget:
                    stopped = "time budget"
                    break
                if ctx.is_main and time.perf_counter() - last_save > 60.0 * cfg.checkpoint_minutes:
                    checkpoint()
                    last_save = time.perf_counter()
            else:
                # every rank finished its shard of the epoch (the loop was not broken by a stop)
                if cfg.max_steps and step >= cfg.max_steps and epoch + 1 < cfg.epochs:
                    stopped = "max_steps"
            complete = batch_done >= len(chunks)
            if ran == 0 and not complete:
                break  # stopped before doing anything new: nothing to validate or save
            totals = sum_over_ranks(sums, ctx)
            if complete:
                epoch, batch_done = epoch + 1, 0
                if epoch >= cfg.epochs:
                    stopped = "completed"  # a stop that fell on the very last step changed nothing
            if ctx.is_main:
                judged = average.model if average is not None else net  # the weights best.pt would hold
                metrics = validate(judged, val, cfg, device, topology)
                record = {"epoch": epoch if complete else epoch + batch_done / len(chunks), "step": step,
                          "train_loss": totals[0] / max(totals[1], 1),
                          **{f"val_{k}": v for k, v in metrics.items()},
                          "images_per_second": totals[1] / max(totals[2] / ctx.world_size, 1e-9),
                          "elapsed": clock.elapsed, "val_split": val_split}
                history.append(record)
                value = metrics[metric]
                if math.isnan(best_value) or (value > best_value if higher else value < best_value):
                    best_value = value
                    payload = _best_payload(unwrap_model(judged), cfg, train, metrics, record["epoch"], step)
                    atomic_torch_save(payload, out / BEST)
                bar.update(task, val=f"val {metric} {value:.4f}")
            if complete:
                sums = [0.0, 0.0, 0.0, 0.0]
            if ctx.is_main:
                checkpoint()
                last_save = time.perf_counter()
                atomic_write_text(json.dumps({"model": cfg.model, "best_metric": metric, "best_value": best_value,
                                         "stopped": stopped, "world_size": ctx.world_size, "epochs": history},
                                        indent=2) + "\n", out / HISTORY)
                plot_history(history, out / PLOT, title=f"{cfg.model} on {data.name}")
            barrier(ctx)
            if stopped != "completed":
                break
    seen = int(sum_over_ranks([seen], ctx)[0])
    return TrainResult(out, model, epoch, step, stopped, metric, best_value, history, clock.elapsed, seen)
