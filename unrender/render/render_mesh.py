"""``render_mesh``: the common composition of the ops, mesh + camera + light -> images.

    pos = camera.world_to_clip(vertices)            # [B,V,4]
    rast = rasterize(pos, faces, (H, W))            # visibility + barycentrics
    P, N, uv = interpolate(...)                     # world position, normal, texture coordinates
    kd, orm, n_map = texture(..., uv_da)            # trilinear, mip stacks built once per call
    L = light.shade(P, N', view, base_color, roughness, metallic, occlusion)  # covered pixels only
    color = antialias(L over background, rast, pos, faces)

Every step is differentiable (vertices, textures, light parameters, camera pose).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cameras import Camera
from ..errors import InputError
from ..mesh import Mesh, vertex_normals, vertex_tangents
from .antialias import antialias as antialias_op
from .rasterize import barycentric_derivatives, interpolate, interpolate_derivatives, rasterize
from .shading.bsdf import unpack_orm
from .shading.normal_map import perturb_normal
from .texture import texture


@dataclass
class RenderOutput:
    """Images of :func:`render_mesh`, all ``[B,H,W,C]`` with row 0 at the top of the image.

    Attributes:
        color: linear radiance ``[B,H,W,3]`` composited over the background, antialiased.
        alpha: coverage ``[B,H,W,1]`` in [0,1] (antialiased at silhouettes).
        depth: camera-space depth along the viewing axis ``[B,H,W,1]`` (0 on background).
        normal: world-space shading normals ``[B,H,W,3]`` (0 on background).
        albedo: base colour ``[B,H,W,3]`` (0 on background).
        rast: the raw raster ``[B,H,W,4]`` in the ops' order (row 0 = bottom), for further ops.
    """

    color: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    albedo: torch.Tensor
    rast: torch.Tensor

    def rgba(self) -> torch.Tensor:
        """``[B,H,W,4]``: colour and alpha (straight, not premultiplied, where alpha > 0)."""
        return torch.cat([self.color, self.alpha], -1)


def _material_maps(mesh: Mesh, rast, pos, uv_rows, n_pix):
    """Per-pixel base colour, (occlusion, roughness, metallic) and tangent-space normal, compact ``[N,.]``."""
    mat = mesh.material
    need_uv = mat is not None and any(t is not None for t in (mat.base_color, mat.orm, mat.normal))
    uv = uv_da = None
    if need_uv:
        if mesh.uvs is None:
            raise InputError("the mesh's material has textures but the mesh has no uvs; unwrap it first.")
        # Sample only the covered pixels: a [1,N,1,.] strip instead of the whole frame.
        uv = interpolate(mesh.uvs, rast, mesh.uv_faces).reshape(-1, 2)[uv_rows].reshape(1, -1, 1, 2)
        with torch.no_grad():  # only selects mip levels
            uv_da = interpolate_derivatives(mesh.uvs, rast, mesh.uv_faces,
                                            barycentric_derivatives(pos, mesh.faces, rast))
            uv_da = uv_da.reshape(-1, 4)[uv_rows].reshape(1, -1, 1, 4)

    def lookup(tex):
        out = texture(tex, uv, uv_da=uv_da, filter="linear-mipmap-linear", boundary="wrap")
        return out.reshape(-1, out.shape[-1])

    dev, dt = mesh.vertices.device, mesh.vertices.dtype
    if mat is not None and mat.base_color is not None:
        base = lookup(mat.base_color)[:, :3]
    elif mesh.vertex_colors is not None:
        base = interpolate(mesh.vertex_colors, rast, mesh.faces).reshape(-1, 3)[uv_rows]
    else:
        factor = mat.base_color_factor if mat is not None else torch.tensor([0.8, 0.8, 0.8])
        base = factor.to(dev, dt).reshape(1, 3).expand(n_pix, 3)
    if mat is not None and mat.orm is not None:
        occ, rough, metal = unpack_orm(lookup(mat.orm))
    else:
        rough_f = mat.roughness_factor if mat is not None else 0.5
        metal_f = mat.metallic_factor if mat is not None else 0.0
        occ = torch.ones(n_pix, 1, device=dev, dtype=dt)
        rough, metal = torch.full_like(occ, rough_f), torch.full_like(occ, metal_f)
    n_map = lookup(mat.normal) if (mat is not None and mat.normal is not None) else None
    return base, occ, rough, metal, n_map


def render_mesh(mesh: Mesh, camera: Camera, light=None, *, shading: str = "pbr", background=None,
                antialias: bool = True, topology=None, material_fn=None) -> RenderOutput:
    """Render ``mesh`` from every camera of ``camera`` under ``light``.

    Args:
        mesh: a :class:`~unrender.mesh.Mesh` (textures, vertex colours or constant material).
        camera: a batch of ``B`` cameras sharing one image size ``(H, W)``.
        light: any :class:`~unrender.render.lights.base.Light` (environment, SG, SH, point, directional).
            ``None`` renders the base colour unlit.
        shading: ``"pbr"`` (GGX metallic-roughness), ``"lambert"`` (diffuse ``albedo / pi * E``) or
            ``"albedo"`` (unlit base colour).
        background: ``None`` (black, transparent), an RGB triple, or linear images ``[B,H,W,3]`` (top row first).
        antialias: blend silhouette pixels analytically (needed for silhouette gradients).
        topology: cached edge topology of ``mesh.faces`` for antialiasing (see :func:`build_topology`).
        material_fn: optional callable ``points[N,3] -> (base_color[N,3], orm[N,3])`` evaluated at the world
            position of every covered pixel (a neural material field, e.g.
            :class:`unrender.geometry.fields.MaterialField`); replaces ``mesh.material``. A third output
            ``offset[N,3]`` perturbs the shading normal: ``normalize(n + offset)`` (world space).
    Returns:
        :class:`RenderOutput`.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> from unrender.cameras import look_at
        >>> cam = Camera.from_fov(40, 32, 32, look_at((0, 0, 3)))
        >>> out = render_mesh(icosphere(2), cam, shading="albedo")
        >>> out.color.shape
        torch.Size([1, 32, 32, 3])
    """
    if shading not in ("pbr", "lambert", "albedo"):
        raise InputError(f"shading must be 'pbr', 'lambert' or 'albedo'; got {shading!r}.")
    mesh.validate()
    camera = camera.to(device=mesh.vertices.device, dtype=mesh.vertices.dtype)
    h, w = camera.height, camera.width
    bsz = len(camera)
    pos = camera.world_to_clip(mesh.vertices).contiguous()
    rast = rasterize(pos, mesh.faces, (h, w))
    covered = rast[..., 3].detach().reshape(-1) > 0
    rows = covered.nonzero().squeeze(1)
    n_pix = rows.numel()

    points = interpolate(mesh.vertices, rast, mesh.faces).reshape(-1, 3)[rows]
    normals_v = mesh.normals if mesh.normals is not None else vertex_normals(mesh.vertices, mesh.faces)
    geo_n = torch.nn.functional.normalize(interpolate(normals_v, rast, mesh.faces).reshape(-1, 3)[rows], dim=-1)
    normal = geo_n
    if material_fn is not None:
        base, orm, *offset = material_fn(points)
        occ, rough, metal = unpack_orm(orm)
        n_map = None
        if offset:
            normal = torch.nn.functional.normalize(geo_n + offset[0], dim=-1)
    else:
        base, occ, rough, metal, n_map = _material_maps(mesh, rast, pos, rows, n_pix)
    if n_map is not None:
        tan_v = vertex_tangents(mesh.vertices, mesh.faces, mesh.uvs, mesh.uv_faces, normals_v)
        tan = interpolate(tan_v, rast, mesh.faces).reshape(-1, 3)[rows]
        normal = perturb_normal(n_map, geo_n, tan)
    batch_of = rows // (h * w)
    eye = camera.center[batch_of]
    view = torch.nn.functional.normalize(eye - points, dim=-1)
    # Normals facing away from the eye (back faces, interpolation) would shade black: flip them.
    normal = torch.where(((normal * view).sum(-1, keepdim=True) < 0) & ((geo_n * view).sum(-1, keepdim=True) < 0),
                         -normal, normal)

    if light is None or shading == "albedo":
        radiance = base
    elif shading == "lambert":
        radiance = base / torch.pi * light.irradiance(points, normal) * occ
    else:
        radiance = light.shade(points, normal, view, base, rough, metal, occ)

    def scatter(vals, c):
        return vals.new_zeros(bsz * h * w, c).index_put((rows,), vals).reshape(bsz, h, w, c)

    color = scatter(radiance, 3)
    mask = covered.reshape(bsz, h, w, 1).to(color.dtype)
    if background is not None:
        bg = torch.as_tensor(background, dtype=color.dtype, device=color.device)
        bg = bg.reshape(1, 1, 1, 3) if bg.dim() == 1 else bg.flip(1)  # images come top-first
        color = color + (1 - mask) * bg
    layers = torch.cat([color, mask], -1)
    if antialias:
        layers = antialias_op(layers, rast, pos, mesh.faces, topology=topology)
    z_row = camera.w2c[:, 2][batch_of]  # camera-space z = z_row . (P, 1); depth is -z
    cam_z = -((points * z_row[:, :3]).sum(-1) + z_row[:, 3])
    flip = lambda t: t.flip(1)  # noqa: E731 - raster row 0 is the bottom; images start at the top
    return RenderOutput(color=flip(layers[..., :3]), alpha=flip(layers[..., 3:]), depth=flip(scatter(cam_z[:, None], 1)),
                        normal=flip(scatter(normal, 3)), albedo=flip(scatter(base, 3)), rast=rast)
