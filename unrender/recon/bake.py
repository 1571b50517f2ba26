"""Bake functions of world position (neural material fields, normal fields) into uv textures.

The mesh is rasterized in texture space: uv vertex ``t`` goes to clip position ``(2u - 1, 2v - 1, 0, 1)``
and the triangles are ``uv_faces``. Raster row 0 is ndc ``y = -1``, i.e. ``v`` small, which is texture
row 0 = the bottom of the image file: exactly the :class:`~unrender.mesh.PBRMaterial` convention, so the
raster *is* the texture with no flip. A texel is covered when its centre ``((c + 0.5) / R, (r + 0.5) / R)``
lies on a triangle (charts must not overlap in uv, which xatlas guarantees). Each covered texel gets the
world position, normal and tangent of the surface point it maps to, interpolated with the texel's
barycentrics ``(b0, b1, b2)`` over the *geometry* corners ``faces[f]`` (corner ``k`` of ``uv_faces[f]``
is corner ``k`` of ``faces[f]``).

After evaluation, charts are grown into the empty gutter by :func:`dilate_texture` so bilinear and
mip-mapped lookups near seams read surface values, not background.

Example:
    >>> from unrender.geometry.primitives import icosphere
    >>> tex = bake_textures(icosphere(2), lambda p: p * 0.5 + 0.5, resolution=64, channels=3)
    >>> tex.shape
    torch.Size([64, 64, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..checks import float_tensor
from ..errors import InputError
from ..mesh import Mesh, PBRMaterial
from ..render.rasterize import rasterize
from ..render.shading.normal_map import tangent_frame

_EPS = 1e-12


@dataclass
class TexelSamples:
    """The surface points behind the covered texels of a ``[R,R]`` texture (row 0 = bottom).

    Attributes:
        points: world positions ``[N,3]`` of the covered texel centres.
        normals: unit interpolated vertex normals ``[N,3]`` (as :func:`~unrender.render.render_mesh` shades).
        tangents: unit tangents ``[N,3]`` along +u, Gram-Schmidt orthogonalised against ``normals``.
        texel_index: flat texel index ``[N]`` (int64) into the ``[R,R]`` image, ``row * R + col``.
        face_index: the face each texel lies on ``[N]`` (int64).
        coverage: ``[R,R]`` bool, True where a texel centre lies on a triangle.
    """

    points: torch.Tensor
    normals: torch.Tensor
    tangents: torch.Tensor
    texel_index: torch.Tensor
    face_index: torch.Tensor
    coverage: torch.Tensor

    @property
    def resolution(self) -> int:
        """Texture side R."""
        return self.coverage.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        """Texture rows ``[N]`` (row 0 = bottom, v small)."""
        return self.texel_index // self.resolution

    @property
    def cols(self) -> torch.Tensor:
        """Texture columns ``[N]`` (u)."""
        return self.texel_index % self.resolution


def _resolution(resolution) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise InputError(f"resolution must be a positive integer (texture side); got {resolution!r}.")
    return resolution


def texel_points(mesh: Mesh, resolution: int) -> TexelSamples:
    """Rasterize ``mesh`` in uv space and return the surface sample behind every covered texel.

    For texel ``(r, c)`` on face ``f`` with barycentrics ``b`` (w.r.t. ``uv_faces[f]``):
    ``point = sum_k b_k vertices[faces[f, k]]``, likewise normals (then normalised) and tangents
    (:meth:`Mesh.tangents`, interpolated, made orthogonal to the normal and normalised), exactly the
    frame :func:`~unrender.render.render_mesh` uses for normal maps.

    Args:
        mesh: :class:`Mesh` with ``uvs[T,2]`` in [0,1] and ``uv_faces[F,3]``.
        resolution: texture side R.
    Returns:
        :class:`TexelSamples` with N covered texels, tensors on the mesh's device and in its dtype.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> s = texel_points(box(), 32)
        >>> s.points.shape[1], bool(s.points.abs().max() <= 0.5 + 1e-6)
        (3, True)
    """
    res = _resolution(resolution)
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be an unrender.mesh.Mesh; got {type(mesh).__name__}.")
    mesh.validate("the mesh to bake")
    if mesh.uvs is None:
        raise InputError("baking needs texture coordinates; unwrap the mesh first (unrender.geometry.uv_unwrap).")
    uv = mesh.uvs.detach()
    clip = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], -1)
    with torch.no_grad():
        rast = rasterize(clip, mesh.uv_faces, (res, res))[0].reshape(-1, 4)
        texel = (rast[:, 3] > 0).nonzero().squeeze(1)
        face = rast[texel, 3].long() - 1
        bary = torch.stack([rast[texel, 0], rast[texel, 1], 1 - rast[texel, 0] - rast[texel, 1]], -1)
        bary = bary.to(mesh.vertices.dtype)
        corners = mesh.faces[face]  # [N,3] geometry vertex ids

        def lerp(per_vertex: torch.Tensor) -> torch.Tensor:
            return (bary[..., None] * per_vertex.detach()[corners]).sum(1)

        normals_v = mesh.vertex_normals()
        points = lerp(mesh.vertices)
        normals = torch.nn.functional.normalize(lerp(normals_v), dim=-1, eps=_EPS)
        tangents = lerp(mesh.tangents())
        tangents = tangents - (tangents * normals).sum(-1, keepdim=True) * normals
        tangents = torch.nn.functional.normalize(tangents, dim=-1, eps=_EPS)
    coverage = torch.zeros(res * res, dtype=torch.bool, device=rast.device)
    coverage[texel] = True
    return TexelSamples(points=points, normals=normals, tangents=tangents, texel_index=texel, face_index=face,
                        coverage=coverage.reshape(res, res))


def dilate_texture(image: torch.Tensor, coverage: torch.Tensor, iterations: int = 16, fill=None) -> torch.Tensor:
    """Grow the covered texels of ``image`` into the uncovered ones (chart padding).

    Each iteration gives every uncovered texel with at least one covered 8-neighbour the mean of
    those neighbours, ``x = sum_{q in N8, covered} x_q / #covered``, and marks it covered. Neighbours
    wrap around the image borders, matching the ``boundary="wrap"`` lookups of
    :func:`~unrender.render.render_mesh`. Texels still uncovered after ``iterations`` get ``fill``:
    ``None`` leaves them as they are, ``"mean"`` uses the mean of the covered texels (so coarse mip
    levels do not darken), or a value per channel ``[C]``.

    Args:
        image: ``[H,W,C]`` texture.
        coverage: ``[H,W]`` bool, True where ``image`` holds valid values.
        iterations: rings of texels to grow (>= 0).
        fill: ``None``, ``"mean"`` or a ``[C]`` sequence / tensor.
    Returns:
        a new ``[H,W,C]`` texture (same dtype/device); covered texels are unchanged.

    Example:
        >>> img = torch.zeros(5, 5, 1); img[2, 2] = 1.0
        >>> cov = torch.zeros(5, 5, dtype=torch.bool); cov[2, 2] = True
        >>> dilate_texture(img, cov, iterations=1)[..., 0].sum().item()   # the 3x3 block around the centre
        9.0
    """
    image = float_tensor("image", image, "[H,W,C]", ndims=(3,))
    if not isinstance(coverage, torch.Tensor) or coverage.shape != image.shape[:2]:
        raise InputError(f"coverage must be a bool tensor [H,W] = {tuple(image.shape[:2])}; "
                         f"got {getattr(coverage, 'shape', type(coverage).__name__)}.")
    if int(iterations) < 0:
        raise InputError(f"iterations must be >= 0; got {iterations}.")
    h, w, c = image.shape
    mask = coverage.to(device=image.device, dtype=torch.bool).clone()
    out = image.clone()
    kernel = torch.ones(c + 1, 1, 3, 3, dtype=image.dtype, device=image.device)
    for _ in range(int(iterations)):
        if bool(mask.all()):
            break
        m = mask.to(image.dtype)[..., None]
        stacked = torch.cat([out * m, m], -1).permute(2, 0, 1)[None]  # [1,C+1,H,W]
        summed = torch.nn.functional.conv2d(torch.nn.functional.pad(stacked, (1, 1, 1, 1), mode="circular"),
                                            kernel, groups=c + 1)[0].permute(1, 2, 0)
        count = summed[..., c]
        grow = (~mask) & (count > 0)
        if not bool(grow.any()):
            break
        out[grow] = summed[..., :c][grow] / count[grow][:, None]
        mask |= grow
    if fill is not None and not bool(mask.all()):
        if isinstance(fill, str):
            if fill != "mean":
                raise InputError(f"fill must be None, 'mean' or a value per channel; got {fill!r}.")
            value = out[mask].mean(0) if bool(mask.any()) else out.new_zeros(c)
        else:
            value = torch.as_tensor(fill, dtype=out.dtype, device=out.device).reshape(-1)
            if value.numel() != c:
                raise InputError(f"fill needs {c} values (one per channel); got {value.numel()}.")
        out[~mask] = value
    return out


def _evaluate(samples: TexelSamples, fn: Callable, channels: int, chunk_size: int, what: str) -> torch.Tensor:
    """``fn(points)`` over the covered texels in chunks, scattered into a flat ``[R*R, channels]`` image."""
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1; got {chunk_size}.")
    n = samples.points.shape[0]
    if n == 0:
        raise InputError("no texel centre lies on the mesh's uv triangles; raise the texture resolution.")
    res = samples.resolution
    flat = None
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            vals = fn(samples.points[start:stop], samples.normals[start:stop], samples.tangents[start:stop])
            if not isinstance(vals, torch.Tensor) or vals.shape != (stop - start, channels):
                got = tuple(vals.shape) if isinstance(vals, torch.Tensor) else type(vals).__name__
                raise InputError(f"{what} must return a tensor [N,{channels}] for points [N,3]; got {got}.")
            if flat is None:
                dtype = vals.dtype if vals.is_floating_point() else torch.float32
                flat = torch.zeros(res * res, channels, dtype=dtype, device=samples.points.device)
            flat[samples.texel_index[start:stop]] = vals.to(flat.dtype).to(flat.device)
    return flat


def bake_textures(mesh: Mesh, fn: Callable[[torch.Tensor], torch.Tensor], resolution: int, channels: int,
                  chunk_size: int = 65536, dilate_iterations: int = 16, samples: TexelSamples | None = None
                  ) -> torch.Tensor:
    """Bake a field ``fn: points[N,3] -> values[N,C]`` into a ``[R,R,C]`` texture over ``mesh``'s atlas.

    ``tex[r, c] = fn(P(r, c))`` for covered texels (:func:`texel_points`), evaluated in chunks of
    ``chunk_size`` points without autograd; then :func:`dilate_texture` grows the charts by
    ``dilate_iterations`` texels and fills the rest with the mean value.

    Args:
        mesh: :class:`Mesh` with uvs (see :func:`unrender.geometry.uv_unwrap.unwrap_uv`).
        fn: field evaluated at world points ``[N,3]`` (mesh's device and dtype), returning ``[N,channels]``.
        resolution: texture side R.
        channels: C.
        chunk_size: points per call of ``fn``.
        dilate_iterations: texels of padding grown around each chart.
        samples: reuse a :func:`texel_points` result (same mesh and resolution) across several bakes.
    Returns:
        texture ``[R,R,C]`` in ``fn``'s dtype, row 0 = bottom (ready for :class:`PBRMaterial`).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> tex = bake_textures(box(), lambda p: p[:, :1] * 0 + 0.25, 32, 1)
        >>> float(tex.min()), float(tex.max())
        (0.25, 0.25)
    """
    res = _resolution(resolution)
    if samples is None:
        samples = texel_points(mesh, res)
    elif samples.resolution != res:
        raise InputError(f"samples were made for resolution {samples.resolution}, not {res}; recompute them.")
    flat = _evaluate(samples, lambda p, n, t: fn(p), int(channels), int(chunk_size), "fn")
    return dilate_texture(flat.reshape(res, res, -1), samples.coverage, dilate_iterations, fill="mean")


def encode_tangent_normals(world_normals: torch.Tensor, normals: torch.Tensor, tangents: torch.Tensor
                           ) -> torch.Tensor:
    """World-space normals to tangent space: the inverse of :func:`~unrender.render.shading.perturb_normal`.

    With ``n = normalize(normals)``, ``t = normalize(tangents - (tangents . n) n)``, ``b = n x t`` and
    ``w = normalize(world_normals)``: ``m = (w . t, w . b, w . n)``, so that
    ``perturb_normal(m, normals, tangents) = w``.

    Args:
        world_normals: ``[...,3]`` perturbed normals in world space.
        normals: ``[...,3]`` geometric (interpolated) normals.
        tangents: ``[...,3]`` tangents (+u direction).
    Returns:
        tangent-space normals ``[...,3]`` in [-1,1] (unit length).

    Example:
        >>> n, t = torch.tensor([[0., 0., 1.]]), torch.tensor([[1., 0., 0.]])
        >>> encode_tangent_normals(torch.tensor([[0., 1., 1.]]), n, t)
        tensor([[0.0000, 0.7071, 0.7071]])
    """
    world_normals = float_tensor("world_normals", world_normals, "[...,3]", last_dim=3)
    t, b, n = tangent_frame(normals, tangents)
    wn = torch.nn.functional.normalize(world_normals, dim=-1, eps=_EPS)
    return torch.stack([(wn * t).sum(-1), (wn * b).sum(-1), (wn * n).sum(-1)], -1)


def bake_normal_map(mesh: Mesh, normal_fn: Callable[[torch.Tensor], torch.Tensor], resolution: int,
                    chunk_size: int = 65536, dilate_iterations: int = 16, samples: TexelSamples | None = None,
                    encoded: bool = False) -> torch.Tensor:
    """Bake a world-space normal field ``normal_fn: points[N,3] -> normals[N,3]`` into a tangent-space map.

    Per covered texel ``m = encode_tangent_normals(normal_fn(P), n, t)`` with the interpolated frame of
    :func:`texel_points` (the frame :func:`~unrender.render.render_mesh` rebuilds), so rendering with the
    map reproduces ``normal_fn`` up to texture filtering. Charts are dilated; the rest is ``(0, 0, 1)``.

    Args:
        mesh: :class:`Mesh` with uvs.
        normal_fn: world-space unit (or unnormalised) normals at world points.
        resolution: texture side R.
        chunk_size, dilate_iterations, samples: as in :func:`bake_textures`.
        encoded: False returns components in [-1,1] (what :attr:`PBRMaterial.normal` holds); True returns
            the file encoding ``m * 0.5 + 0.5`` in [0,1] (a flat surface is ``(0.5, 0.5, 1)``).
    Returns:
        ``[R,R,3]``, row 0 = bottom.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> nm = bake_normal_map(icosphere(2), lambda p: p, 32)   # the sphere's own normals: flat map
        >>> bool((nm[..., 2] > 0.95).all())
        True
    """
    res = _resolution(resolution)
    if samples is None:
        samples = texel_points(mesh, res)
    elif samples.resolution != res:
        raise InputError(f"samples were made for resolution {samples.resolution}, not {res}; recompute them.")

    def tangent_space(points, normals, tangents):
        return encode_tangent_normals(normal_fn(points), normals, tangents)

    flat = _evaluate(samples, tangent_space, 3, int(chunk_size), "normal_fn")
    img = dilate_texture(flat.reshape(res, res, 3), samples.coverage, dilate_iterations, fill=(0.0, 0.0, 1.0))
    return img * 0.5 + 0.5 if encoded else img


def bake_material(mesh: Mesh, material_fn: Callable, resolution: int, normal_fn: Callable | None = None,
                  chunk_size: int = 65536, dilate_iterations: int = 16) -> PBRMaterial:
    """Bake a material field into a :class:`PBRMaterial` (base colour, ORM and optionally normal textures).

    ``material_fn(points[N,3]) -> (base_color[N,3], orm[N,3])`` (the ``material_fn`` of
    :func:`~unrender.render.render_mesh`) is evaluated once per chunk for both textures, on one shared
    uv rasterization; ``normal_fn`` as in :func:`bake_normal_map` (flat ``(0, 0, 1)`` map when None). A
    third output of ``material_fn``, a world-space normal offset ``d`` (what ``render_mesh`` adds to the
    geometric normal), is baked as the normal map ``normalize(n + d)`` in the texel's tangent frame instead.

    Args:
        mesh: :class:`Mesh` with uvs.
        material_fn: the material field.
        resolution: texture side R.
        normal_fn: optional world-space normal field.
        chunk_size, dilate_iterations: as in :func:`bake_textures`.
    Returns:
        :class:`PBRMaterial` with ``base_color``, ``orm`` and ``normal`` textures ``[R,R,3]``.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> mat = bake_material(box(), lambda p: (p * 0 + 0.5, p * 0 + 1.0), 16)
        >>> mat.base_color.shape, float(mat.orm.min())
        (torch.Size([16, 16, 3]), 1.0)
    """
    res = _resolution(resolution)
    samples = texel_points(mesh, res)

    def outputs(points, normals, tangents):
        out = material_fn(points)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise InputError("material_fn must return (base_color [N,3], orm [N,3]) or (base_color, orm, "
                             "normal offset [N,3]).")
        channels = [out[0][:, :3], out[1][:, :3]]
        if len(out) == 3:
            shading = torch.nn.functional.normalize(normals + out[2][:, :3], dim=-1, eps=_EPS)
            channels.append(encode_tangent_normals(shading, normals, tangents))
        return torch.cat(channels, -1)

    with torch.no_grad():
        probe = material_fn(samples.points[:1] if samples.points.shape[0] else torch.zeros(1, 3))
    width = 9 if isinstance(probe, tuple) and len(probe) == 3 else 6
    flat = _evaluate(samples, outputs, width, int(chunk_size), "material_fn (base_color and orm side by side)")
    img = dilate_texture(flat.reshape(res, res, width)[..., :6], samples.coverage, dilate_iterations, fill="mean")
    if width == 9:
        normal = dilate_texture(flat.reshape(res, res, width)[..., 6:], samples.coverage, dilate_iterations,
                                fill=(0.0, 0.0, 1.0))
    elif normal_fn is not None:
        normal = bake_normal_map(mesh, normal_fn, res, chunk_size, dilate_iterations, samples=samples)
    else:
        normal = img.new_zeros(res, res, 3)
        normal[..., 2] = 1.0
    return PBRMaterial(base_color=img[..., :3].contiguous(), orm=img[..., 3:].contiguous(), normal=normal)


__all__ = ["TexelSamples", "texel_points", "dilate_texture", "bake_textures", "encode_tangent_normals",
           "bake_normal_map", "bake_material"]
