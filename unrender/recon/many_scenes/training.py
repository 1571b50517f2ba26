"""The two stages of many-scene learning, single- or multi-process.

Stage 1, :func:`fit_scenes` (``unrender many fit``): the shared parts (decoder, bases) and the first scenes'
own parameters are learned together. Every step renders ``scenes_per_step`` scenes of this process, adds

    L = mean |C - C_gt|^2 + lambda_o mean (O - alpha)^2 + lambda_tv sum TV(planes)

(colours over white, ``O`` the opacity; latent mode: the loss of :mod:`.latent`, after training the
autoencoder on this stage's images) and takes one Adam step on the shared parts and on the scenes
rendered (scenes not rendered keep their moments untouched: one optimizer per scene). Under ``torchrun``
the scenes are sharded across ranks (``scenes[rank::world]``, each rank holds only its scenes) and the
shared gradients are averaged with one all-reduce per step, so the shared parts stay identical everywhere.
At the end the mean of the fitted scenes' own parameters is kept as the prior new scenes start from.

Stage 2, :func:`add_scenes` (``unrender many add``): each new scene is learned alone with everything shared
frozen: only its own parameters (``shared``: ``K`` weights + micro planes; ``independent``: its tri-plane)
train. Scenes are independent, so ranks split them without communicating.

Both stages keep going after a kill: stage 1 resumes from its last checkpoint (``checkpoint_minutes``), stage 2
skips the scenes already done. ``max_minutes`` stops early with every finished scene's outputs written.

Example:
    >>> fit_scenes("scenes_root", "run", preset("fast"))       # doctest: +SKIP
    >>> add_scenes("new_scenes_root", "run")                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ...distributed import DistributedContext, any_rank, barrier, broadcast_error, init_distributed, shutdown
from ...errors import DataError
from ...geometry.triplane import total_variation
from ...run_state import RunClock
from ...schedules import cosine_decay
from .config import ManyScenesConfig, preset
from .model import SceneParams, SharedParts, render_rays, scene_planes
from .outputs import over_white, write_scene_outputs
from .latent import LatentViews, latent_loss, latent_views, train_autoencoder
from .scenes import SceneImages, TrainRays, find_scenes, read_scene, train_rays
from .store import RunStore

#: Learning rates decay by cosine from 1x to this fraction over a stage.
FINAL_LR_FRACTION = 0.1


def sample_rays(rays: TrainRays, n: int, foreground_fraction: float, generator: torch.Generator):
    """``n`` training rays, ``round(n f)`` of them from the mask's pixels: ``(origins, directions, rgba)``,
    each ``[n, .]``."""
    n_fg = int(round(n * foreground_fraction)) if rays.foreground.numel() else 0
    idx = torch.randint(rays.rgba.shape[0], (n - n_fg,), generator=generator)
    if n_fg:
        fg = rays.foreground[torch.randint(rays.foreground.numel(), (n_fg,), generator=generator)]
        idx = torch.cat([idx, fg])
    return rays.origins[idx], rays.directions[idx], rays.rgba[idx]


def scene_data(scene: SceneImages, shared: SharedParts, cfg: ManyScenesConfig) -> TrainRays | LatentViews:
    """What a scene trains on: all its pixels as rays, or (latent mode) its views as latent targets."""
    rays = train_rays(scene, cfg.render.box_scale)
    if shared.autoencoder is None:
        return rays
    return latent_views(scene.train_rgba, scene.train_camera, rays.box, shared.autoencoder,
                        encode=not shared.autoencoder_training())


def scenes_loss(shared: SharedParts, params: list[SceneParams], data: list[TrainRays | LatentViews],
                cfg: ManyScenesConfig, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """The stage loss (module docstring) of one step over ``params``' scenes; also returns the step's PSNR.

    ``data`` holds each scene's :func:`scene_data` (kept on the CPU; each step's batch moves to the device).
    """
    planes = scene_planes(shared, params)
    if shared.autoencoder is not None:
        def render(o, d, boxes):
            return render_rays(planes, shared.decoder, o, d, boxes, cfg.render.samples, generator=generator,
                               jitter=True, background=shared.background())
        loss, mse = latent_loss(render, shared.autoencoder, data, cfg.latent.views_per_step,
                                cfg.latent.latent_weight, cfg.opacity_weight, generator,
                                joint=shared.autoencoder_training())
    else:
        batches = [sample_rays(r, cfg.render.rays, cfg.render.foreground_fraction, generator) for r in data]
        device = planes.device
        o, d, rgba = (torch.stack(t).to(device) for t in zip(*batches))
        boxes = torch.stack([r.box for r in data]).to(device)
        color, opacity = render_rays(planes, shared.decoder, o, d, boxes, cfg.render.samples, generator=generator,
                                     jitter=True)
        mse = (color - over_white(rgba)).square().mean()
        loss = mse + cfg.opacity_weight * (opacity - rgba[..., 3:]).square().mean()
    if cfg.tv_weight > 0:
        planes = [p.own_planes() for p in params]
        if shared.bases is not None and shared.bases.requires_grad:
            planes.append(shared.bases)
        loss = loss + cfg.tv_weight * sum(total_variation(p) for p in planes)
    return loss, float(-10 * torch.log10(mse.detach().clamp_min(1e-10)))


def cosine_factor(step: int, total: int) -> float:
    """Learning-rate multiplier: ``f + (1 - f) (1 + cos(pi step / total)) / 2`` with ``f = FINAL_LR_FRACTION``."""
    return cosine_decay(step / max(total, 1), FINAL_LR_FRACTION)


def _set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _adam(groups: list[tuple[list, float]]) -> torch.optim.Adam:
    return torch.optim.Adam([{"params": p, "lr": lr, "base_lr": lr} for p, lr in groups if p], betas=(0.9, 0.99))


def scene_optimizer(params: SceneParams, lr_planes: float, lr_weights: float) -> torch.optim.Adam:
    """Adam over one scene's own parameters (planes at ``lr_planes``, basis weights at ``lr_weights``)."""
    if params.representation != "independent":
        return _adam([([params.micro], lr_planes), ([params.weights], lr_weights)])
    return _adam([([params.planes], lr_planes)])


def _seeded_scene(cfg: ManyScenesConfig, index: int) -> SceneParams:
    return SceneParams(cfg, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7919 * (index + 1)))


def _progress(total: int, done: int, enabled: bool, title: str):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    bar = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), disable=not enabled)
    return bar, bar.add_task(title, total=total, completed=done, info="")


def _context(cfg: ManyScenesConfig, ctx: DistributedContext | None) -> tuple[DistributedContext, bool]:
    if ctx is not None:
        return ctx, False
    ctx = init_distributed(cfg.device)
    threads = cfg.threads or (1 if ctx.distributed else 0)
    if threads:
        torch.set_num_threads(threads)
    return ctx, True


# ------------------------------------------------------------------------------------------------ stage 1
def fit_scenes(data, out, cfg: ManyScenesConfig | None = None, *, max_minutes: float = 0.0, resume: bool = False,
               force: bool = False, progress: bool = True, ctx: DistributedContext | None = None) -> dict:
    """Stage 1 (module docstring) on every scene under ``data``; writes the run folder ``out``.

    Args:
        data: scenes root (:func:`unrender.recon.many_scenes.scenes.find_scenes`).
        out: run folder; must be new (or ``force``), unless ``resume``.
        cfg: config (default: the ``default`` preset); with ``resume`` the run's own config is used.
        max_minutes: time budget (0: none); training stops early and every output is still written.
        resume: continue the run in ``out`` from its last checkpoint.
        force: clear ``out`` if it holds another run.
        progress: show a progress bar (rank 0).
    Returns:
        the run summary (``RUN/summary.json``).
    """
    cfg = cfg or preset("default")
    ctx, owned = _context(cfg, ctx)
    try:
        return _fit(Path(data), RunStore(out), cfg, max_minutes, resume, force, progress, ctx)
    finally:
        if owned:
            shutdown(ctx)


def _prepare_run(store: RunStore, cfg: ManyScenesConfig, resume: bool, force: bool, ctx) -> ManyScenesConfig:
    error = None
    if ctx.is_main:
        try:
            if resume:
                if not store.shared_path.is_file():
                    raise DataError(f"{store.root} holds no checkpoint to resume; start it without --resume.")
            elif store.root.exists() and any(store.root.iterdir()):
                if not force:
                    raise DataError(f"{store.root} already holds a run; choose another --out, pass --resume to "
                                    f"continue it, or --force to overwrite it.")
                import shutil
                shutil.rmtree(store.root)
            if not resume:
                store.root.mkdir(parents=True, exist_ok=True)
                store.write_config(cfg)
        except DataError as exc:
            error = exc
    broadcast_error(error, ctx)
    return store.read_config()


def _fit(data: Path, store: RunStore, cfg: ManyScenesConfig, max_minutes: float, resume: bool, force: bool,
         progress: bool, ctx: DistributedContext) -> dict:
    sources = find_scenes(data)
    cfg = _prepare_run(store, cfg, resume, force, ctx)
    torch.manual_seed(cfg.seed)
    shared = SharedParts(cfg).to(ctx.device)
    local = list(range(ctx.rank, len(sources), ctx.world_size))
    scenes = [read_scene(sources[i]) for i in local]
    params = [_seeded_scene(cfg, i).to(ctx.device) for i in local]
    f = cfg.fit
    shared_opt = _adam([([shared.bases] if shared.bases is not None else [], f.lr_planes),
                        (list(shared.decoder.parameters()), f.lr_decoder),
                        (list(shared.autoencoder.parameters()) if shared.joint_autoencoder else [],
                         cfg.latent.joint_lr)])
    opts = [scene_optimizer(p, f.lr_planes, f.lr_weights) for p in params]
    per_rank = math.ceil(len(sources) / ctx.world_size)
    per_step = min(f.scenes_per_step, per_rank)
    total = math.ceil(f.steps_per_scene * per_rank / per_step)
    step, history, clock = 0, [], RunClock()
    counts = [0] * len(local)          # steps each local scene took part in (saved with it)
    if resume:
        state = store.load_shared()
        shared.load_state_dict(state["shared"])
        shared_opt.load_state_dict(state["optimizer"])
        step, history, clock = state["step"], state["history"], RunClock(state["seconds"])
        for k, (name, p, o) in enumerate(zip([s.name for s in scenes], params, opts)):
            saved = store.load_scene(name)
            p.load_state_dict(saved["params"])
            o.load_state_dict(saved["optimizer"])
            counts[k] = saved["steps"]
    elif shared.autoencoder is not None:
        _fit_autoencoder(shared, scenes, cfg, ctx, history)
    if shared.autoencoder is not None and not shared.joint_autoencoder:
        shared.autoencoder.requires_grad_(False)
    rays = [scene_data(s, shared, cfg) for s in scenes]
    gen = torch.Generator()
    # A fixed cycle through this rank's scenes (the same after a resume): every scene gets the same steps.
    order = torch.randperm(len(local), generator=torch.Generator().manual_seed(cfg.seed + ctx.rank)).tolist()

    def checkpoint(done: bool, prior: SceneParams | None = None) -> None:
        digest = shared_digest(shared)
        for s, p, o, n in zip(scenes, params, opts, counts):
            store.save_scene(s.name, {"params": p.state_dict(), "optimizer": o.state_dict(), "stage": "fit",
                                      "done": done, "steps": n, "rank": ctx.rank, "shared_digest": digest})
        if ctx.is_main:
            store.save_shared({"shared": shared.state_dict(), "optimizer": shared_opt.state_dict(), "step": step,
                               "history": history, "seconds": clock.elapsed,
                               "prior": None if prior is None else prior.state_dict(),
                               "fit_scenes": [s.name for s in sources]})

    bar, task = _progress(total, step, progress and ctx.is_main, "fit")
    last_save, limit = time.perf_counter(), max_minutes * 60
    with bar:
        while step < total:
            chosen = [order[(step * per_step + k) % len(order)] for k in range(per_step)] if order else []
            factor = cosine_factor(step, total)
            # Seeded by (seed, rank, step): a resumed run draws the same rays as one never stopped.
            gen.manual_seed((cfg.seed * 1_000_003 + ctx.rank) * 10_000_019 + step)
            for opt in [shared_opt] + [opts[c] for c in chosen]:
                _set_lr(opt, factor)
                opt.zero_grad(set_to_none=True)
            loss, step_psnr = (scenes_loss(shared, [params[c] for c in chosen], [rays[c] for c in chosen], cfg, gen)
                               if chosen else (None, float("nan")))
            if loss is not None:
                loss.backward()
            _average_shared_grads(shared, ctx)
            shared_opt.step()
            if shared.joint_autoencoder:   # the background follows the encoder
                shared.autoencoder.set_white_latent(scenes[0].train_rgba.shape[1] if scenes else 64)
            for c in chosen:
                opts[c].step()
                counts[c] += 1
            step += 1
            if step % 25 == 0 or step == total:
                history.append({"step": step, "psnr": step_psnr, "seconds": clock.elapsed})
            bar.update(task, advance=1, info=f"psnr {step_psnr:.2f}")
            if any_rank(limit > 0 and clock.elapsed > limit, ctx):
                break
            if any_rank(time.perf_counter() - last_save > cfg.checkpoint_minutes * 60, ctx):
                checkpoint(done=False)
                last_save = time.perf_counter()
    seconds = clock.elapsed
    prior = _scene_prior(cfg, params, len(sources), ctx)
    checkpoint(done=True, prior=prior)
    scene_seconds = seconds / max(len(sources), 1) * ctx.world_size
    for s, r, p, n in zip(scenes, rays, params, counts):
        write_scene_outputs(store, s, r.box, shared, p, cfg, {"stage": "fit", "train_seconds": scene_seconds,
                                                              "steps": n, "rank": ctx.rank})
    barrier(ctx)
    return store.write_summary() if ctx.is_main else {}


def _fit_autoencoder(shared: SharedParts, scenes: list[SceneImages], cfg: ManyScenesConfig, ctx, history) -> None:
    """Latent mode: train the autoencoder on this rank's training images (gradients averaged over ranks); the
    caller freezes it."""
    images = torch.cat([over_white(s.train_rgba).permute(0, 3, 1, 2) for s in scenes])
    gen = torch.Generator().manual_seed(cfg.seed * 7 + ctx.rank)
    lat = cfg.latent
    psnr_ae = train_autoencoder(shared.autoencoder, images, lat.autoencoder_steps, lat.autoencoder_lr,
                                lat.autoencoder_batch, gen, average_grads=lambda ps: _average_grads(ps, ctx))
    history.append({"step": 0, "autoencoder_psnr": psnr_ae})


def shared_digest(shared: SharedParts) -> str:
    """SHA-256 of the shared parameters' bytes: every scene file records the shared parts it was trained with."""
    import hashlib

    h = hashlib.sha256()
    for name, value in sorted(shared.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _average_shared_grads(shared: SharedParts, ctx: DistributedContext) -> None:
    """All-reduce (mean) of the shared gradients: one flat buffer, one collective per step."""
    _average_grads(shared.trainable(), ctx)


def _average_grads(tensors: list[torch.Tensor], ctx: DistributedContext) -> None:
    if not ctx.distributed:
        return
    import torch.distributed as dist

    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p in tensors:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def _scene_prior(cfg: ManyScenesConfig, params: list[SceneParams], total: int, ctx) -> SceneParams:
    """Mean of all fitted scenes' own parameters (summed over ranks): where new scenes start."""
    prior = SceneParams(cfg).to(ctx.device)
    with torch.no_grad():
        for name, value in prior.named_parameters():
            local = sum((dict(p.named_parameters())[name].detach() for p in params), torch.zeros_like(value))
            if ctx.distributed:
                import torch.distributed as dist
                dist.all_reduce(local, op=dist.ReduceOp.SUM)
            value.copy_(local / max(total, 1))
    return prior


# ------------------------------------------------------------------------------------------------ stage 2
def add_scenes(data, run, *, max_minutes: float = 0.0, overrides: ManyScenesConfig | None = None,
               progress: bool = True, ctx: DistributedContext | None = None) -> dict:
    """Stage 2 (module docstring): learn every scene under ``data`` that ``run`` does not hold yet.

    Args:
        data: scenes root.
        run: a run folder made by :func:`fit_scenes`.
        max_minutes: time budget; no new scene starts after it (run ``add`` again to continue).
        overrides: a config to use instead of the run's (only the ``add`` section and the device may differ).
        progress: show a progress bar (rank 0).
    Returns:
        the run summary (``RUN/summary.json``).
    """
    store = RunStore(run)
    cfg = store.read_config()
    if overrides is not None:
        _check_same_shared_parts(cfg, overrides, store)
        cfg = overrides
    ctx, owned = _context(cfg, ctx)
    try:
        return _add(Path(data), store, cfg, max_minutes, progress, ctx)
    finally:
        if owned:
            shutdown(ctx)


def _check_same_shared_parts(run_cfg: ManyScenesConfig, cfg: ManyScenesConfig, store: RunStore) -> None:
    """New scenes must be built like the run's: same representation, tri-plane sizes and scene boxes."""
    for key in ("representation", "triplane", "seed"):
        if getattr(cfg, key) != getattr(run_cfg, key):
            raise DataError(f"{key} differs from the run's ({store.config_path}); new scenes must use the shared "
                            f"parts as they were fitted: drop that override.")
    if cfg.render.box_scale != run_cfg.render.box_scale:
        raise DataError(f"render.box_scale differs from the run's ({store.config_path}); drop that override.")


def _add(data: Path, store: RunStore, cfg: ManyScenesConfig, max_minutes: float, progress: bool,
         ctx: DistributedContext) -> dict:
    state = store.load_shared()
    if state.get("prior") is None:
        raise DataError(f"{store.shared_path} has no finished stage 1; finish `unrender many fit` (or --resume it) "
                        f"before adding scenes.")
    shared = SharedParts(cfg).to(ctx.device)
    shared.load_state_dict(state["shared"])
    shared.requires_grad_(False)
    digest = shared_digest(shared)
    sources = [s for s in find_scenes(data) if not store.scene_done(s.name)]
    local = sources[ctx.rank::ctx.world_size]
    clock, limit = RunClock(), max_minutes * 60
    a = cfg.add
    bar, task = _progress(len(local) * a.iterations, 0, progress and ctx.is_main, "add")
    with bar:
        for source in local:
            if limit > 0 and clock.elapsed > limit:
                break
            scene = read_scene(source)
            rays = scene_data(scene, shared, cfg)
            params = SceneParams(cfg).to(ctx.device)
            params.load_state_dict(state["prior"])
            opt = scene_optimizer(params, a.lr_planes, a.lr_weights)
            gen = torch.Generator().manual_seed(cfg.seed * 31 + hash_name(source.name))
            start = time.perf_counter()
            for it in range(a.iterations):
                _set_lr(opt, cosine_factor(it, a.iterations))
                opt.zero_grad(set_to_none=True)
                loss, step_psnr = scenes_loss(shared, [params], [rays], cfg, gen)
                loss.backward()
                opt.step()
                bar.update(task, advance=1, info=f"{source.name} psnr {step_psnr:.2f}")
            seconds = time.perf_counter() - start
            store.save_scene(source.name, {"params": params.state_dict(), "stage": "add", "done": True,
                                           "steps": a.iterations, "rank": ctx.rank, "shared_digest": digest})
            write_scene_outputs(store, scene, rays.box, shared, params, cfg,
                                {"stage": "add", "train_seconds": seconds, "steps": a.iterations})
    barrier(ctx)
    return store.write_summary() if ctx.is_main else {}


def hash_name(name: str) -> int:
    """A stable (process-independent) small integer from a scene name, for per-scene seeds."""
    value = 0
    for ch in name.encode():
        value = (value * 131 + ch) % 1_000_003
    return value
