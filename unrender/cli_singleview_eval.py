"""``unrender eval-singleview``: score a trained single-view run (or a baseline) on a collection split.

A thin command: it builds the predictor (the run's, through ``unrender.singleview.predict.load_predictor``,
or a baseline fitted on ``--train-split``), calls :func:`unrender.singleview.evaluate.evaluate_split` and
prints :func:`~unrender.singleview.evaluate.format_table`. Registered in :mod:`unrender.cli` as::

    app.command("eval-singleview")(eval_singleview)

Example:
    unrender eval-singleview --run runs/dibr --data coll --split test
    unrender eval-singleview --baseline mean --data coll --json mean.json
"""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import UnrenderError

BASELINES = ("sphere", "mean", "nn")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def build_baseline(kind: str, data: Path, train_split: str = "train"):
    """Fit the baseline ``kind`` (``sphere``, ``mean`` or ``nn``) on ``train_split`` of the collection ``data``.

    Example:
        >>> build_baseline("sphere", Path("coll"))   # doctest: +SKIP
        SphereBaseline(radius=0.31, subdivisions=4)
    """
    from .errors import InputError
    from .singleview.baselines import MeanShapeBaseline, NearestNeighbourBaseline, SphereBaseline

    fits = {"sphere": SphereBaseline.fit, "mean": MeanShapeBaseline.fit, "nn": NearestNeighbourBaseline.fit}
    if kind not in fits:
        raise InputError(f"--baseline {kind!r} is not known; use one of {', '.join(BASELINES)}.")
    return fits[kind](data, split=train_split)


def load_run_predictor(run: Path):
    """The predictor of a training run folder, via ``unrender.singleview.predict.load_predictor`` (imported here,
    so this module imports without it).

    Example:
        >>> load_run_predictor(Path("runs/dibr")).predict(torch.rand(1, 64, 64, 4))   # doctest: +SKIP
    """
    try:
        from .singleview.predict import load_predictor
    except ImportError as exc:
        raise UnrenderError(f"cannot load --run {run}: unrender.singleview.predict is not available ({exc}); "
                            f"evaluate a --baseline instead or update unrender.") from None
    return load_predictor(run)


def eval_singleview(
        run: Path | None = typer.Option(None, "--run", help="Training run folder (from the single-view trainer)."),
        data: Path = typer.Option(..., "--data", help="Collection root in DVR's layout (unrender synth --kind "
                                                      "collection)."),
        split: str = typer.Option("test", help="Split to evaluate: train, val or test."),
        baseline: str | None = typer.Option(None, "--baseline", help="Evaluate a baseline instead of --run: sphere, "
                                                                     "mean (category mean shape) or nn (retrieval)."),
        train_split: str = typer.Option("train", help="Split the --baseline is fitted on."),
        protocol: str = typer.Option("both", help="dibr (2,500 points, Chamfer-L1, F@0.01..0.05), list (100k "
                                                  "points, Chamfer-L2x1e4, F@0.005/0.01/0.05, IoU) or both."),
        views_per_object: int = typer.Option(1, help="Views predicted per object."),
        view_index: int = typer.Option(0, help="First view predicted (then view_index+1, ... modulo the count)."),
        max_objects: int | None = typer.Option(None, help="Evaluate only the first N objects of each category."),
        batch_size: int = typer.Option(16, help="Images per predict call."),
        seed: int = typer.Option(0, help="Seed of the surface and volume samples."),
        json_out: Path | None = typer.Option(None, "--json", help="Also write the full report (every sample) as "
                                                                 "JSON here.")):
    """Per-category Chamfer / F-score / IoU of a single-view run or baseline under DIB-R's and LIST's protocols."""
    import torch

    from .singleview.evaluate import evaluate_split, format_table

    if (run is None) == (baseline is None):
        _fail("give exactly one of --run RUN (a trained model) or --baseline sphere|mean|nn.")
    try:
        predictor = build_baseline(baseline, data, train_split) if baseline else load_run_predictor(run)
        report = evaluate_split(predictor, data, split=split, views_per_object=views_per_object,
                                view_index=view_index, protocol=protocol,
                                generator=torch.Generator().manual_seed(seed), batch_size=batch_size,
                                max_objects=max_objects)
    except UnrenderError as exc:
        _fail(str(exc))
    typer.echo(format_table(report))
    typer.echo(f"\n{report.overall.samples} predictions, {report.images_per_second:.1f} images/s in predict")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.to_json() + "\n")
        typer.echo(f"wrote {json_out}")
