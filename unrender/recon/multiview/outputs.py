"""Everything a reconstruction writes into ``OUT``.

    mesh/mesh.obj, mesh.mtl, texture_kd.png, texture_ks.png, texture_n.png   (OBJ + nvdiffrec's texture names)
    mesh/mesh.glb                      glTF 2.0, metallic-roughness with normal and occlusion maps
    light/probe.hdr                    the learned environment, lat-long (row 0 = up, +y)
    test/<frame>.png                   RGBA render of every test frame, same name and size as the input
    metrics.json                       test PSNR/SSIM (over white), mask IoU, triangles, time, memory, [geometry]
    report.html (+ report/)            input vs render grid, loss curves, turntable GIF, metrics
    config.json                        the full config (written at the start of the run)
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import torch

from ...cameras import Camera, look_at
from ...color import linear_to_srgb, unpremultiply
from ...errors import UnrenderError
from ...io.images import contact_sheet, write_hdr, write_png
from ...io.mesh_files import load_mesh, save_mesh
from ...render.render_mesh import render_mesh
from .report import write_report


def render_rgba(mesh, camera: Camera, light, batch: int = 4) -> torch.Tensor:
    """sRGB-encoded straight-alpha renders ``[N,H,W,4]`` (top row first) of ``mesh`` from every camera."""
    frames = []
    with torch.no_grad():
        for s in range(0, len(camera), batch):
            o = render_mesh(mesh, camera[s:s + batch], light)
            a = o.alpha.clamp(0, 1)
            rgb = unpremultiply(o.color, a)  # antialiased edges are premultiplied
            frames.append(torch.cat([linear_to_srgb(rgb.clamp(0, 1)), a], -1))
    return torch.cat(frames)


def peak_memory_mib(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory (CUDA), MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _test_metrics(mesh, light, test, out: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    from ...metrics.image import mask_iou, psnr, ssim

    renders = render_rgba(mesh, test.camera, light)
    (out / "test").mkdir(exist_ok=True)
    for img, f in zip(renders, test.files):
        write_png(out / "test" / (Path(f).stem + ".png"), img)
    target = test.rgba.float()  # sRGB-encoded, as the renders: metrics compare what a viewer sees
    white = torch.ones(3)
    pred_rgb = renders[..., :3] * renders[..., 3:] + white * (1 - renders[..., 3:])
    gt_rgb = target[..., :3] * target[..., 3:] + white * (1 - target[..., 3:])
    m = {"test_views": len(test), "psnr": float(psnr(pred_rgb, gt_rgb)), "ssim": float(ssim(pred_rgb, gt_rgb)),
         "mask_iou": float(mask_iou(renders[..., 3:], target[..., 3:]))}
    return m, gt_rgb, pred_rgb


def turntable(mesh, light, center, radius: float, frames: int = 24, size: int = 192) -> torch.Tensor:
    """RGBA sRGB frames ``[frames,size,size,4]`` of the mesh on an orbit at 20 degrees elevation."""
    import math

    eyes = torch.tensor([[center[0] + radius * math.sin(2 * math.pi * k / frames) * math.cos(0.35),
                          center[1] + radius * math.sin(0.35),
                          center[2] + radius * math.cos(2 * math.pi * k / frames) * math.cos(0.35)]
                         for k in range(frames)])
    cam = Camera.from_fov(40, size, size, look_at(eyes, target=tuple(center)))
    return render_rgba(mesh, cam, light)


def write_mesh_and_light(out: Path, mesh, light):
    """``out/mesh/mesh.obj`` (+ MTL, textures), ``out/mesh/mesh.glb`` and ``out/light/probe.hdr``; returns the light,
    built, on the CPU."""
    light = light.cpu()
    with torch.no_grad():
        light.build()
    save_mesh(mesh, out / "mesh" / "mesh.obj")
    save_mesh(mesh, out / "mesh" / "mesh.glb")
    (out / "light").mkdir(exist_ok=True)
    with torch.no_grad():
        write_hdr(out / "light" / "probe.hdr", light.to_latlong(256, 512).detach().cpu())
    return light


def write_outputs(out: Path, mesh, light, data, cfg, history: dict, seconds: float, gt_mesh=None) -> dict:
    """Write the files of the module docstring; returns the metrics dict."""
    from ...data.layouts import read_dataset

    light = write_mesh_and_light(out, mesh, light)
    metrics = {"triangles": mesh.num_faces, "vertices": mesh.num_vertices, "wall_time_s": round(seconds, 1),
               "peak_memory_mib": round(peak_memory_mib(light.base.device), 1), "preset": cfg.preset,
               "iterations": {"pass1": len(history["pass1"]), "pass2": len(history["pass2"])}}
    grid = None
    try:
        test = read_dataset(data, "test")
    except UnrenderError as exc:
        test, metrics["test_note"] = None, f"no test split: {exc}"
    if test is not None:
        m, gt_rgb, pred_rgb = _test_metrics(mesh, light, test, out)
        metrics.update(m)
        k = min(6, len(test))
        grid = contact_sheet(list(torch.cat([gt_rgb[:k], pred_rgb[:k]])), columns=k)
    if gt_mesh is not None:
        from ...metrics.geometry import evaluate_meshes

        metrics["geometry"] = evaluate_meshes(mesh, load_mesh(gt_mesh)).to_dict()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    lo, hi = mesh.vertices.amin(0), mesh.vertices.amax(0)
    center = ((lo + hi) / 2).tolist()
    radius = 1.6 * float((hi - lo).norm()) / (2 * 0.364)  # fits the box at 40 degrees fov
    turn = turntable(mesh, light, center, radius)
    write_report(out, metrics, history, grid, turn)
    return metrics
