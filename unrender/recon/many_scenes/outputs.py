"""What a trained scene leaves in ``RUN/scenes/<name>/``: test renders, metrics, and a mesh on request.

* ``test/<frame>.png``: every test frame rendered at the input size, RGBA (sRGB colour over nothing, alpha
  = accumulated opacity), so it composites like the input frames;
* ``metrics.json``: PSNR and SSIM of the renders against the test frames, both composited over white (NeRF's
  convention), the scene's own parameter bytes, training time and steps;
* ``mesh.ply`` (``export_mesh``, when ``cfg.mesh_resolution > 0``): marching cubes of the density at ``level``
  on a ``resolution^3`` grid of the scene box, with the decoded colour per vertex.

Example:
    >>> metrics = write_scene_outputs(store, scene, rays.box, shared, params, cfg, extra={})  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...color import srgb_to_linear
from ...geometry.refined_grid import evaluate_chunked, grid_points
from ...geometry.triplane import sample_triplanes
from ...io.images import write_png
from ...metrics.image import psnr, ssim
from .config import ManyScenesConfig
from .latent import latent_camera
from .model import UNIT_BOX, SceneParams, SharedParts, render_rays, scene_planes
from .scenes import SceneImages
from .store import RunStore


@torch.no_grad()
def render_views(planes: torch.Tensor, shared: SharedParts, camera, box: torch.Tensor,
                 cfg: ManyScenesConfig) -> torch.Tensor:
    """Render whole images of one scene (latent mode: latent images at ``1/f`` the size, then decoded).

    Args:
        planes: ``[1,3,C,R,R]`` the scene's tri-plane.
        camera: ``T`` cameras of ``H x W`` pixels.
        box: ``[2,3]`` scene box.
    Returns:
        ``[T,H,W,4]``: colour over white in ``[..., :3]`` and opacity in ``[..., 3:]``.
    """
    ae = shared.autoencoder
    low = camera if ae is None else latent_camera(camera, ae.factor)
    origins, directions = low.rays()
    shape = origins.shape[:-1]
    o, d = (t.reshape(-1, 3).float().to(planes.device) for t in (origins, directions))
    box = box.to(planes.device)
    parts = []
    for start in range(0, o.shape[0], cfg.render.chunk):
        sl = slice(start, start + cfg.render.chunk)
        value, opacity = render_rays(planes, shared.decoder, o[None, sl], d[None, sl], box[None], cfg.render.samples,
                                     background=shared.background())
        parts.append(torch.cat([value[0], opacity[0]], -1))
    out = torch.cat(parts).reshape(*shape, -1)
    if ae is None:
        return out.cpu()
    latent, opacity = out[..., :-1].permute(0, 3, 1, 2), out[..., -1:].permute(0, 3, 1, 2)
    rgb = ae.decode(latent).clamp(0, 1)
    opacity = F.interpolate(opacity, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([rgb, opacity], 1).permute(0, 2, 3, 1).cpu()


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    """Straight sRGB colour and alpha ``[...,4]`` composited over white: ``c a + (1 - a)``."""
    return rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])


def write_scene_outputs(store: RunStore, scene: SceneImages, box: torch.Tensor, shared: SharedParts,
                        params: SceneParams, cfg: ManyScenesConfig, extra: dict) -> dict:
    """Render and score ``scene``'s test frames, write them and ``metrics.json``; returns the metrics.

    ``extra`` (training time, steps, stage) is merged into the metrics.
    """
    n = len(scene.test_names) if cfg.test_views == 0 else min(cfg.test_views, len(scene.test_names))
    planes = scene_planes(shared, [params]).detach()
    rendered = render_views(planes, shared, scene.test_camera[torch.arange(n)], box, cfg)
    # The render's colour is over white; its straight colour is (c - (1 - a)) / a where a > 0.
    alpha = rendered[..., 3:].clamp(0, 1)
    straight = ((rendered[..., :3] - (1 - alpha)) / alpha.clamp_min(1e-4)).clamp(0, 1)
    folder = store.scene_dir(scene.name) / "test"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_png(folder / f"{scene.test_names[i]}.png", torch.cat([straight[i], alpha[i]], -1))
    target = over_white(scene.test_rgba[:n])
    pred = rendered[..., :3].clamp(0, 1)
    metrics = {"psnr": float(psnr(pred, target).mean()), "ssim": float(ssim(pred, target).mean()),
               "test_views": n, "parameter_bytes": params.parameter_bytes(),
               "representation": cfg.representation, **extra}
    if cfg.mesh_resolution > 0:
        metrics["mesh"] = export_mesh(store.scene_dir(scene.name) / "mesh.ply", shared, params, box,
                                      cfg.mesh_resolution, cfg.mesh_level)
    store.write_scene_metrics(scene.name, metrics)
    return metrics


@torch.no_grad()
def export_mesh(path, shared: SharedParts, params: SceneParams, box: torch.Tensor, resolution: int = 128,
                level: float = 10.0) -> bool:
    """Marching cubes of the scene's density at ``level`` (module docstring); False if the level set is empty."""
    from skimage.measure import marching_cubes

    from ...io.mesh_files import save_mesh
    from ...mesh import Mesh

    planes = scene_planes(shared, [params])
    grid = grid_points(resolution, 1.0, device=planes.device).reshape(-1, 3)
    sigma = evaluate_chunked(lambda p: shared.decoder(sample_triplanes(planes, p[None], UNIT_BOX))[0], grid, 65536)
    field = sigma.reshape(resolution, resolution, resolution).cpu().numpy()
    if not field.min() < level < field.max():
        return False
    verts, faces, _, _ = marching_cubes(field, level=level)
    unit = torch.from_numpy(np.ascontiguousarray(verts)).float() / (resolution - 1) * 2 - 1
    colors = None                       # a latent scene's field holds latents, not colours: a plain mesh
    if shared.autoencoder is None:
        srgb = shared.decoder(sample_triplanes(planes, unit[None].to(planes.device), UNIT_BOX))[1][0].cpu()
        colors = srgb_to_linear(srgb)   # the field learned display (sRGB) colour; meshes store linear
    world = box[0].cpu() + (unit + 1) / 2 * (box[1] - box[0]).cpu()
    # marching_cubes orients faces for increasing values; density grows inwards, so flip to face outwards.
    save_mesh(Mesh(world, torch.from_numpy(faces[:, ::-1].copy()).long(), vertex_colors=colors), path)
    return True
