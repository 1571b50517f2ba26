"""``unrender train singleview`` and ``unrender predict``: thin commands over :mod:`unrender.singleview`.

Wire them into ``unrender/cli.py`` with ``register(app)`` (a ``train`` group holding ``singleview``, and the
top-level ``predict``), or register the two functions yourself. Each command parses its options, then calls
one library function; errors the user can fix are printed as one sentence (exit status 2).

Multi-process training runs the same command under torchrun, e.g.
``torchrun --nproc_per_node=2 -m unrender.cli train singleview --data COLL --model dibr --out RUN``
(gloo on CPUs, nccl on GPUs; only rank 0 writes and prints).

Example:
    >>> import typer
    >>> app = typer.Typer()
    >>> register(app)
    >>> sorted(c.name for c in app.registered_commands), [g.name for g in app.registered_groups]
    (['predict'], ['train'])
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .errors import UnrenderError


def _fail(exc: Exception) -> None:
    from .cli import _fail as fail  # the CLI's one way of reporting an error (imported late: cli imports us)

    fail(exc)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


def train_singleview(
        data: Path = typer.Option(..., "--data", help="Collection folder in DVR's ShapeNet layout (e.g. from "
                                                      "`unrender synth --kind collection`)."),
        out: Path = typer.Option(..., "--out", help="Run folder: config.json, history.json, metrics.png, "
                                                    "checkpoint/last.pt, best.pt."),
        model: str | None = typer.Option(None, "--model", help="dibr (template mesh, DIB-R) or implicit (SDF, "
                                                               "LIST-style); default dibr, or the run's own with "
                                                               "--resume."),
        preset: str = typer.Option("default", help="Preset: fast, default or quality (ignored with --resume)."),
        set_: list[str] = typer.Option([], "--set", help="Override a config field, KEY=VALUE (repeatable), e.g. "
                                                         "--set dibr.laplacian=10 --set implicit.query_points=4096."),
        epochs: int | None = typer.Option(None, help="Passes over the training split."),
        batch_size: int | None = typer.Option(None, help="Images per step and process."),
        lr: float | None = typer.Option(None, help="Adam learning rate."),
        max_minutes: float | None = typer.Option(None, help="Time budget: stop after this many minutes of "
                                                            "training (summed over resumes), keeping best.pt."),
        device: str | None = typer.Option(None, help="auto, cpu or cuda (default: the config's, auto)."),
        resume: bool = typer.Option(False, help="Continue the run in --out from checkpoint/last.pt (its config, "
                                                "plus any overrides given here)."),
        force: bool = typer.Option(False, help="Overwrite a previous run in --out."),
        progress: bool = typer.Option(True, help="Show a progress bar.")):
    """Train a single-view predictor (DIB-R mesh or LIST-style implicit) on an object collection."""
    from .singleview.train_config import apply_overrides
    from .singleview.train_config import preset as make_preset
    from .singleview.training import load_run_config
    from .singleview.training import train_singleview as run

    try:
        base = load_run_config(out) if resume else make_preset(preset, model or "dibr")
        if resume and model is not None and model != base.model:
            raise UnrenderError(f"--model {model} does not match the {base.model} run in {out}; drop --model or "
                                f"choose another --out.")
        extra = [f"{k}={v}" for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                                         ("max_minutes", max_minutes), ("device", device)) if v is not None]
        cfg = apply_overrides(base, list(set_) + extra)
        result = run(data, out, cfg, resume=resume, force=force, progress=progress)
    except UnrenderError as exc:
        _fail(exc)
    if _is_main_process():
        best = f"{result.best_metric} {result.best_value:.4f}"
        typer.echo(f"{result.stopped}: {result.epochs_completed} epochs, {result.steps} steps, "
                   f"{result.elapsed / 60:.1f} min; best val {best}")
        typer.echo(f"best: {out / 'best.pt'}")
        typer.echo(f"history: {out / 'history.json'} ({out / 'metrics.png'})")


def predict(images: list[Path] = typer.Argument(..., help="Image files (PNG/JPEG, sRGB; RGBA alpha = mask)."),
            run: Path = typer.Option(..., "--run", help="Run folder written by `unrender train singleview`."),
            out: Path = typer.Option(..., "--out", help="Output folder: <image stem>.obj (+ .mtl) and .glb."),
            device: str = typer.Option("auto", help="auto, cpu or cuda."),
            force: bool = typer.Option(False, help="Overwrite existing outputs in --out.")):
    """One image -> one mesh per file, in the training collection's canonical object frame."""
    from .singleview.predict import predict_files

    try:
        written = predict_files(images, run, out, device=device, force=force)
    except UnrenderError as exc:
        _fail(exc)
    for path in written:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``train singleview`` (in a ``train`` group) and ``predict`` to the ``unrender`` app."""
    train_app = typer.Typer(no_args_is_help=True, help="Train a model on a dataset.")

    @train_app.callback()
    def _train_group():
        """Train a model on a dataset (see `unrender train singleview --help`)."""

    train_app.command("singleview")(train_singleview)
    app.add_typer(train_app, name="train")
    app.command("predict")(predict)
