"""``unrender many fit|add``: many scenes with shared tri-plane bases (thin commands over
:mod:`unrender.recon.many_scenes`).

Stage 1 learns the shared parts with the first scenes, stage 2 adds new scenes with them frozen::

    unrender synth scenes --kind scenes --scenes 20
    unrender many fit scenes --out run --preset fast
    unrender many add more_scenes --run run

Multi-process runs are the same command under torchrun, e.g.
``torchrun --nproc_per_node=2 -m unrender.cli many fit scenes --out run`` (gloo on CPUs, nccl on GPUs; scenes are
sharded across processes; only rank 0 prints).

Example:
    >>> import typer
    >>> app = typer.Typer()
    >>> register(app)
    >>> [g.name for g in app.registered_groups]
    ['many']
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .errors import UnrenderError


def _fail(exc: Exception) -> None:
    from .cli import _fail as fail  # the CLI's one way of reporting an error (imported late: cli imports us)

    fail(exc)


def _print_summary(summary: dict, run: Path) -> None:
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    mean = summary.get("mean", {})
    if mean:
        typer.echo(f"{summary['scenes']} scenes: mean test PSNR {mean.get('psnr', float('nan')):.2f} dB, "
                   f"SSIM {mean.get('ssim', float('nan')):.4f}, {mean.get('train_seconds', float('nan')):.1f} s and "
                   f"{mean.get('parameter_bytes', 0) / 1024:.1f} KiB of own parameters per scene")
    typer.echo(f"summary: {run / 'summary.json'}")


def _overrides(set_: list[str], device: str | None, mesh: int | None) -> list[str]:
    extra = [f"device={device}"] if device else []
    return list(set_) + extra + ([f"mesh_resolution={mesh}"] if mesh is not None else [])


_SET_HELP = "Override a config field, KEY=VALUE (repeatable), e.g. --set triplane.bases=32 --set add.iterations=300."
_MESH_HELP = "Also export each scene's density level set as scenes/<name>/mesh.ply on a grid of this size (e.g. 128)."


def many_fit(data: Path = typer.Argument(..., help="Scenes root: folders of NeRF-synthetic scenes (`unrender synth "
                                                   "--kind scenes`) or a DVR collection (`--kind collection`)."),
             out: Path = typer.Option(..., "--out", help="Run folder: config.json, shared.pt, scenes/<name>/, "
                                                         "summary.json."),
             representation: str = typer.Option("shared", help="shared (Fused-Planes bases), latent (the same, "
                                                               "rendered in a latent space and decoded, IG-AE) or "
                                                               "independent (one full tri-plane per scene, the "
                                                               "baseline)."),
             preset: str = typer.Option("default", help="Preset: fast or default (ignored with --resume)."),
             set_: list[str] = typer.Option([], "--set", help=_SET_HELP),
             max_minutes: float = typer.Option(0.0, help="Time budget in minutes (0: none); training stops early "
                                                         "and every scene's outputs are still written."),
             mesh: int | None = typer.Option(None, help=_MESH_HELP),
             device: str | None = typer.Option(None, help="auto, cpu or cuda (default: the config's, auto)."),
             resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
             force: bool = typer.Option(False, help="Overwrite a previous run in --out."),
             progress: bool = typer.Option(True, help="Show a progress bar.")):
    """Stage 1: learn the shared parts (decoder, bases) together with every scene under DATA."""
    from .recon.many_scenes import RunStore, apply_overrides, fit_scenes
    from .recon.many_scenes import preset as make_preset

    try:
        base = RunStore(out).read_config() if resume else make_preset(preset, representation)
        cfg = apply_overrides(base, _overrides(set_, device, mesh))
        summary = fit_scenes(data, out, cfg, max_minutes=max_minutes, resume=resume, force=force,
                             progress=progress)
    except UnrenderError as exc:
        _fail(exc)
    _print_summary(summary, out)


def many_add(data: Path = typer.Argument(..., help="Scenes root holding the new scenes (scenes the run already "
                                                   "holds are skipped)."),
             run: Path = typer.Option(..., "--run", help="Run folder written by `unrender many fit`."),
             set_: list[str] = typer.Option([], "--set", help=_SET_HELP + " Only add.*, render.chunk, test_views, "
                                                                        "mesh_*, device and threads may change."),
             max_minutes: float = typer.Option(0.0, help="Time budget in minutes (0: none); no new scene starts "
                                                         "after it (run the command again to continue)."),
             mesh: int | None = typer.Option(None, help=_MESH_HELP),
             device: str | None = typer.Option(None, help="auto, cpu or cuda (default: the run's)."),
             progress: bool = typer.Option(True, help="Show a progress bar.")):
    """Stage 2: learn each new scene under DATA with the run's shared parts frozen (only its own weights and
    micro planes train)."""
    from .recon.many_scenes import RunStore, add_scenes, apply_overrides

    try:
        cfg = apply_overrides(RunStore(run).read_config(), _overrides(set_, device, mesh))
        summary = add_scenes(data, run, max_minutes=max_minutes, overrides=cfg, progress=progress)
    except UnrenderError as exc:
        _fail(exc)
    _print_summary(summary, run)


def register(app: typer.Typer) -> None:
    """Add the ``many`` group (``fit``, ``add``) to the ``unrender`` app."""
    many_app = typer.Typer(no_args_is_help=True, help="Many scenes with shared tri-plane bases (Fused-Planes).")

    @many_app.callback()
    def _many_group():
        """Many scenes at once: `unrender many fit` (stage 1), `unrender many add` (stage 2)."""

    many_app.command("fit")(many_fit)
    many_app.command("add")(many_add)
    app.add_typer(many_app, name="many")
