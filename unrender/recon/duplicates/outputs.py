"""Everything ``unrender duplicates`` writes besides ``poses.json``::

    mesh/mesh.obj (+ .mtl, textures), mesh/mesh.glb   the shared object in its own frame (poses.json places it)
    light/probe.hdr      the recovered environment, lat-long, in the photo's world frame
    rerender.png         the photo with every posed copy re-rendered from the recovered scene
    relit/light_<i>.png  the copies (RGBA, photo camera) under three other environments
    novel/<i>.png        the object alone on a turntable (RGBA)
    metrics.json         copies posed, re-render PSNR inside the instance masks, time, memory, [ground truth]
    report.html (+ report/)  photo vs re-render, loss curves, the turntable, the metrics
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera
from ...color import linear_to_srgb, unpremultiply
from ...io.images import contact_sheet, write_png
from ...mesh import Mesh
from ...render.lights.environment import EnvironmentLight
from ...render.render_mesh import render_mesh
from ..multiview.outputs import peak_memory_mib, turntable, write_mesh_and_light
from ..multiview.report import write_report
from .inputs import DuplicatesInput

#: Seeds of the procedural skies of ``relit/``.
RELIGHT_SEEDS = (101, 202, 303)


def write_points_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """ASCII PLY of ``points[P,3]`` with 8-bit sRGB colours from linear ``colors[P,3]``."""
    rgb = np.round(np.asarray(linear_to_srgb(np.clip(colors, 0, 1))) * 255).astype(int).reshape(-1, 3)
    head = ["ply", "format ascii 1.0", f"element vertex {len(points)}", "property float x", "property float y",
            "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    rows = [f"{p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {c[0]} {c[1]} {c[2]}" for p, c in zip(points, rgb)]
    path.write_text("\n".join(head + rows) + "\n")


def poses_document(data, object_to_camera: np.ndarray, posed: np.ndarray, solver: dict) -> dict:
    """The content of ``poses.json`` for the poses ``object_to_camera [N,4,4]`` (rows of unposed copies ignored);
    ``solver`` (how the poses were found) is stored as it is."""
    nan_to_none = lambda T, ok: T.tolist() if ok and np.isfinite(T).all() else None  # noqa: E731
    poses = [nan_to_none(T, ok) for T, ok in zip(object_to_camera, posed)]
    return {
        "object_to_world": poses, "object_to_camera": poses, "labels": data.labels,
        "posed": [bool(p) for p in posed], "solver": solver,
        "intrinsics": {"fx": data.intrinsics.fx, "fy": data.intrinsics.fy, "cx": data.intrinsics.cx,
                       "cy": data.intrinsics.cy, "width": data.intrinsics.width, "height": data.intrinsics.height,
                       "estimated": data.intrinsics.estimated},
        "conventions": "world = the photo's camera frame (OpenGL axes: x right, y up, looking down -z), so "
                       "object_to_world = object_to_camera; mesh/ is in the object frame (upright model: y up along "
                       "the ground's normal, origin on the plane of the copies' centres; free model: axes of the "
                       "reference copy's camera, origin at the median of the sparse points); scale is arbitrary "
                       "(one photo cannot tell it); null = copy not posed.",
    }


def photo_camera(data: DuplicatesInput) -> Camera:
    """The photo's camera at the origin of its own frame (``c2w = I``, OpenGL axes)."""
    K = data.intrinsics
    return Camera(torch.eye(4)[None], K.fx, K.fy, K.cx, K.cy, K.width, K.height)


def scene_mesh(mesh: Mesh, object_to_camera: np.ndarray, posed: np.ndarray) -> Mesh:
    """The posed copies of ``mesh`` merged into one mesh in the photo's camera frame."""
    from ...data.duplicates.layout import merge_copies

    return merge_copies(mesh, np.asarray(object_to_camera)[np.asarray(posed, bool)])


def render_scene(scene: Mesh, data: DuplicatesInput, light) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear colour ``[H,W,3]`` and coverage ``[H,W,1]`` of the copies merged in ``scene``
    (:func:`scene_mesh`) seen by the photo's camera."""
    with torch.no_grad():
        o = render_mesh(scene, photo_camera(data), light)
    return o.color[0], o.alpha[0]


def rerender_psnr(render: torch.Tensor, alpha: torch.Tensor, data: DuplicatesInput,
                  posed=None) -> tuple[torch.Tensor, float, float]:
    """``(composite, psnr, psnr_posed)``: the render over the photo (sRGB ``[H,W,3]``, for viewing), the PSNR of the
    render over black against the photo inside the union of all instance masks (sRGB; a copy that was not
    posed renders black there and counts against the score, as it should), and the same inside the masks
    of the posed copies only (``posed [N]``; NaN when none)."""
    photo = linear_to_srgb(torch.as_tensor(data.image).float().clamp(0, 1))
    rendered = linear_to_srgb(unpremultiply(render, alpha).clamp(0, 1)) * alpha
    comp = rendered + photo * (1 - alpha)
    masks = torch.as_tensor(data.masks).bool()
    posed = torch.ones(len(masks), dtype=torch.bool) if posed is None else torch.as_tensor(np.asarray(posed, bool))

    def psnr(inside):
        if not bool(inside.any()):
            return float("nan")
        mse = float((rendered[inside] - photo[inside]).square().mean())
        return float(10 * np.log10(1.0 / max(mse, 1e-12)))

    return comp, psnr(masks.any(0)), psnr(masks[posed].any(0))


def write_outputs(out: Path, data: DuplicatesInput, mesh: Mesh, light: EnvironmentLight, object_to_camera, posed,
                  history: dict, seconds: float, extra_metrics: dict | None = None) -> dict:
    """Write the files of the module docstring; returns the metrics."""
    from ...data.procedural_env import random_environment

    light = write_mesh_and_light(out, mesh, light)
    scene = scene_mesh(mesh, object_to_camera, posed)
    color, alpha = render_scene(scene, data, light)
    comp, psnr, psnr_posed = rerender_psnr(color, alpha, data, posed)
    write_png(out / "rerender.png", comp)
    (out / "relit").mkdir(exist_ok=True)
    for i, seed in enumerate(RELIGHT_SEEDS):
        other = EnvironmentLight.from_latlong(random_environment(seed, 64, 128), resolution=32)
        with torch.no_grad():
            other.build()
        c, a = render_scene(scene, data, other)
        rgb = linear_to_srgb(unpremultiply(c, a).clamp(0, 1))
        write_png(out / "relit" / f"light_{i}.png", torch.cat([rgb, a], -1))
    lo, hi = mesh.vertices.amin(0), mesh.vertices.amax(0)
    frames = turntable(mesh, light, ((lo + hi) / 2).tolist(), 1.6 * float((hi - lo).norm()) / (2 * 0.364))
    (out / "novel").mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        write_png(out / "novel" / f"{i:03d}.png", f)
    metrics = {"copies": int(len(posed)), "copies_posed": int(np.sum(posed)), "rerender_psnr_in_masks": psnr,
               "rerender_psnr_in_posed_masks": psnr_posed,
               "triangles": mesh.num_faces, "wall_time_s": round(seconds, 1),
               "peak_memory_mib": round(peak_memory_mib(torch.device("cpu")), 1)}
    metrics.update(extra_metrics or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    photo = linear_to_srgb(torch.as_tensor(data.image).float().clamp(0, 1))
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    for section in ("poses", "shape"):
        for k, v in metrics.get(section, {}).items():
            if not isinstance(v, list):
                flat[f"{section}.{k}"] = v
    write_report(out, flat, history, contact_sheet([photo, comp], columns=2), frames)
    return metrics
