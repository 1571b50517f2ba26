"""``unrender duplicates``: one photo of many identical objects -> instance poses (Structure from Duplicates).

A thin command over :mod:`unrender.recon.duplicates`; for now it writes the poses and the sparse points
(shape, material and light come with the joint reconstruction stage). Wire it into ``unrender/cli.py``
with ``register(app)``.

Example:
    >>> import typer
    >>> app = typer.Typer()
    >>> register(app)
    >>> [c.name for c in app.registered_commands]
    ['duplicates']
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import typer

from .errors import UnrenderError


def _fail(exc: Exception) -> None:
    from .cli import _fail as fail  # the CLI's one way of reporting an error (imported late: cli imports us)

    fail(exc)


def write_points_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """ASCII PLY of ``points[P,3]`` with 8-bit sRGB colours from linear ``colors[P,3]``."""
    from .color import linear_to_srgb

    rgb = np.round(np.asarray(linear_to_srgb(np.clip(colors, 0, 1))) * 255).astype(int).reshape(-1, 3)
    head = ["ply", "format ascii 1.0", f"element vertex {len(points)}", "property float x", "property float y",
            "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    rows = [f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c[0]} {c[1]} {c[2]}" for p, c in zip(points, rgb)]
    path.write_text("\n".join(head + rows) + "\n")


def duplicates(image: Path = typer.Argument(..., help="The photo (PNG/JPEG sRGB, or .hdr); an RGBA file's alpha is "
                                                     "split into instances when --masks is not given."),
               masks: Path | None = typer.Option(None, "--masks", help="Instance-label PNG (0 = background, any other "
                                                                      "value = one copy) or a folder of binary masks."),
               fov: float | None = typer.Option(None, "--fov", help="Horizontal field of view in degrees."),
               focal: float | None = typer.Option(None, "--focal", help="Focal length in pixels."),
               out: Path = typer.Option(..., "--out", help="Output folder: poses.json, points.ply."),
               rotations: int = typer.Option(8, help="In-plane rotations of each crop tried when matching."),
               force: bool = typer.Option(False, help="Overwrite a previous run in --out.")):
    """One photo of N identical objects -> each copy's pose (object-to-world 4x4) and the object's sparse points."""
    from .data.synth import prepare_output
    from .recon.duplicates import PoseConfig, estimate_poses, read_duplicates_input

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = read_duplicates_input(image, masks, fov=fov, focal=focal)
        for w in caught:
            typer.secho(f"warning: {w.message}", err=True, fg=typer.colors.YELLOW)
        cfg = PoseConfig()
        cfg.match.rotations = rotations
        res = estimate_poses(data, cfg)
        out = prepare_output(out, force)
    except UnrenderError as exc:
        _fail(exc)
    nan_to_none = lambda T: None if not np.isfinite(T).all() else T.tolist()  # noqa: E731
    poses = {
        "object_to_world": [nan_to_none(T) for T in res.object_to_world],
        "object_to_camera": [nan_to_none(T) for T in res.object_to_camera],
        "labels": data.labels, "posed": res.posed.tolist(), "reference": int(res.reference),
        "reprojection_rmse_px": res.reprojection_rmse_px, "pairs": [list(p) for p in res.pairs],
        "intrinsics": {"fx": data.intrinsics.fx, "fy": data.intrinsics.fy, "cx": data.intrinsics.cx,
                       "cy": data.intrinsics.cy, "width": data.intrinsics.width, "height": data.intrinsics.height,
                       "estimated": data.intrinsics.estimated},
        "conventions": "world = the photo's camera frame (OpenGL axes: x right, y up, looking down -z); object frame: "
                       "origin at the median of the sparse points, axes of the reference copy's camera frame, scale "
                       "such that the points' RMS radius is 0.5; null = copy not posed.",
    }
    (out / "poses.json").write_text(json.dumps(poses, indent=2) + "\n")
    write_points_ply(out / "points.ply", res.points, res.point_colors)
    typer.echo(f"posed {res.num_posed} of {len(res.posed)} instances ({len(res.points)} sparse points, "
               f"reprojection RMSE {res.reprojection_rmse_px:.2f} px)")
    typer.echo(f"wrote {out / 'poses.json'} and {out / 'points.ply'}")


def register(app: typer.Typer) -> None:
    """Add ``duplicates`` to the ``unrender`` app."""
    app.command("duplicates")(duplicates)
