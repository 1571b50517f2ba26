"""``unrender duplicates``: one photo of many identical objects -> instance poses (Structure from Duplicates).

A thin command over :func:`unrender.recon.duplicates.pipeline.reconstruct_duplicates`, which writes the
poses, the shared textured mesh, the light and the renders. Wired into ``unrender/cli.py`` with
``register(app)``.

Example:
    >>> import typer
    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['duplicates']
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from .errors import InputError, UnrenderError


def _fail(exc: Exception) -> None:
    from .cli import _fail as fail  # the CLI's one way of reporting an error (imported late: cli imports us)

    fail(exc)


def duplicates(image: Path = typer.Argument(..., help="The photo (PNG/JPEG sRGB, or .hdr); an RGBA file's alpha is "
                                                     "split into instances when --masks is not given."),
               masks: Path | None = typer.Option(None, "--masks", help="Instance-label PNG (0 = background, any other "
                                                                      "value = one copy) or a folder of binary masks."),
               fov: float | None = typer.Option(None, "--fov", help="Horizontal field of view in degrees."),
               focal: float | None = typer.Option(None, "--focal", help="Focal length in pixels."),
               out: Path = typer.Option(..., "--out", help="Output folder (poses.json, mesh/, light/, rerender.png, "
                                                           "relit/, novel/, metrics.json, report.html)."),
               preset: str = typer.Option("default", help="Preset of the shared object's reconstruction: fast, default "
                                                          "or quality."),
               set_: list[str] = typer.Option([], "--set", help="Override a config field, KEY=VALUE (repeatable), e.g. "
                                                               "--set recon.pass1.iterations=300 or view_size=96."),
               max_minutes: float | None = typer.Option(None, help="Time budget; outputs are still written."),
               gt: Path | None = typer.Option(None, "--gt", help="A scene folder written by `unrender synth --kind "
                                                                 "duplicates`: scores poses, shape and albedo."),
               rotations: int = typer.Option(8, help="In-plane rotations of each crop tried when matching."),
               progress: bool = typer.Option(True, help="Show progress bars."),
               force: bool = typer.Option(False, help="Overwrite a previous run in --out.")):
    """One photo of N identical objects -> each copy's pose, the shared textured mesh and the environment light."""
    from .config_overrides import apply_overrides
    from .data.synth import prepare_output
    from .recon.duplicates import read_duplicates_input
    from .recon.duplicates.pipeline import DuplicatesConfig, reconstruct_duplicates, recon_preset

    try:
        cfg = DuplicatesConfig(recon=recon_preset(preset))
        cfg.pose.match.rotations = rotations
        extra = [f"max_minutes={max_minutes}"] if max_minutes is not None else []
        cfg = apply_overrides(cfg, list(set_) + extra)
        if gt is not None and not (gt / "gt" / "mesh.obj").exists():
            raise InputError(f"--gt {gt}: no gt/mesh.obj inside; pass the folder `unrender synth --kind duplicates` "
                             f"wrote (it holds camera.json and gt/).")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = read_duplicates_input(image, masks, fov=fov, focal=focal)
        for w in caught:
            typer.secho(f"warning: {w.message}", err=True, fg=typer.colors.YELLOW)
        out = prepare_output(out, force)
        metrics = reconstruct_duplicates(data, out, cfg, gt=gt, progress=progress, log=typer.echo)
    except UnrenderError as exc:
        _fail(exc)
    typer.echo(f"posed {metrics['copies_posed']} of {metrics['copies']} copies; re-render PSNR inside the masks "
               f"{metrics['rerender_psnr_in_masks']:.2f} dB")
    if "shape" in metrics:
        typer.echo(f"vs ground truth: rotation error {metrics['poses']['mean_rotation_deg']:.2f} deg, "
                   f"F@0.02 {metrics['shape']['f_score@0.02']:.3f}, normal consistency "
                   f"{metrics['shape']['normal_consistency']:.3f}, albedo PSNR {metrics['albedo_psnr']:.2f} dB")
    typer.echo(f"report: {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add ``duplicates`` to the ``unrender`` app."""
    app.command("duplicates")(duplicates)
