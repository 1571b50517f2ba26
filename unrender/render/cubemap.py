"""Cube-map geometry and resampling between cube maps and lat-long (equirectangular) maps.

Cube maps are ``[6,R,R,C]`` (or ``[B,6,R,R,C]``), faces in the order +x, -x, +y, -y, +z, -z.
A direction ``d`` falls on the face of its largest-magnitude component ``m`` (ties go to x,
then y); the face-local coordinates follow the OpenGL cube-map specification (table 8.19):

    face  sc   tc   |  face  sc   tc
    +x   -z   -y    |  -x   +z   -y
    +y   +x   +z    |  -y   +x   -z
    +z   +x   -y    |  -z   -x   -y

    s = (sc / |m| + 1) / 2,   t = (tc / |m| + 1) / 2,

and ``s`` runs along the face's width (texel column ``s * R``), ``t`` along its height
(texel row ``t * R``), the same convention as 2-D textures (``uv = (s, t)``).

Lat-long maps are ``[H,W,C]`` (or ``[B,H,W,C]``) with, at ``uv = (u, v)`` in ``[0,1]^2``
(texel centres at ``((j+0.5)/W, (i+0.5)/H)``), the polar angle ``theta = pi v`` measured from
+y and the azimuth ``phi = 2 pi u - pi``:

    d = (sin(theta) sin(phi),  cos(theta),  -sin(theta) cos(phi))

So **row 0 is straight up (+y)**, the last row straight down, the middle column (u = 0.5)
looks down -z (the default OpenGL camera's view), u = 0.75 is +x and u = 0 / 1 is +z.
Inverse: ``u = atan2(d_x, -d_z) / (2 pi) + 1/2``, ``v = atan2(sqrt(d_x^2 + d_z^2), d_y) / pi``.
This is the usual layout of an equirectangular HDR file read top row first; a loader that
flips images vertically (as texture loading does) must flip a lat-long map back.
"""

from __future__ import annotations

import math

import torch

from ..checks import float_tensor
from ..errors import InputError

# dir = M[face] @ (sc, tc, 1): the inverse of the table in the module docstring.
_FACE_MATRICES = (
    ((0, 0, 1), (0, -1, 0), (-1, 0, 0)),    # +x: ( 1, -tc, -sc)
    ((0, 0, -1), (0, -1, 0), (1, 0, 0)),    # -x: (-1, -tc,  sc)
    ((1, 0, 0), (0, 0, 1), (0, 1, 0)),      # +y: (sc,   1,  tc)
    ((1, 0, 0), (0, 0, -1), (0, -1, 0)),    # -y: (sc,  -1, -tc)
    ((1, 0, 0), (0, -1, 0), (0, 0, 1)),     # +z: (sc, -tc,   1)
    ((-1, 0, 0), (0, -1, 0), (0, 0, -1)),   # -z: (-sc, -tc, -1)
)


def dir_to_face(d: torch.Tensor):
    """Map directions ``d[...,3]`` (any length) to ``(face[...] int64, s[...], t[...])``, s, t in [0, 1].

    Differentiable w.r.t. ``d`` through ``s`` and ``t`` (the face choice is piecewise constant).
    See the module docstring for the formula.

    Example:
        >>> dir_to_face(torch.tensor([[0., 0., -2.]]))
        (tensor([5]), tensor([0.5000]), tensor([0.5000]))
    """
    x, y, z = d.unbind(-1)
    ax, ay, az = x.abs(), y.abs(), z.abs()
    is_x = (ax >= ay) & (ax >= az)
    is_y = ~is_x & (ay >= az)
    px, py, pz = x >= 0, y >= 0, z >= 0
    one = torch.ones_like(x, dtype=torch.int64)
    face = torch.where(is_x, torch.where(px, 0 * one, one),
                       torch.where(is_y, torch.where(py, 2 * one, 3 * one), torch.where(pz, 4 * one, 5 * one)))
    ma = torch.where(is_x, ax, torch.where(is_y, ay, az))
    ma = ma.clamp_min(torch.finfo(d.dtype).tiny)  # a zero direction maps to the face centre, not NaN
    sc = torch.where(is_x, torch.where(px, -z, z), torch.where(is_y | pz, x, -x))
    tc = torch.where(is_x, -y, torch.where(is_y, torch.where(py, z, -z), -y))
    return face, 0.5 * (sc / ma + 1.0), 0.5 * (tc / ma + 1.0)


def face_to_dir(face: torch.Tensor, sc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    """Un-normalised direction ``[...,3]`` of face-local coordinates ``sc, tc`` in ``[-1,1]`` on ``face``.

    ``sc = 2 s - 1``, ``tc = 2 t - 1``; values outside ``[-1, 1]`` continue the face's plane
    (used to find the neighbouring face's texel across an edge). Inverse of :func:`dir_to_face`.

    Example:
        >>> face_to_dir(torch.tensor([0]), torch.tensor([0.]), torch.tensor([0.]))
        tensor([[1., 0., 0.]])
    """
    mats = torch.tensor(_FACE_MATRICES, dtype=sc.dtype, device=sc.device)[face]
    st1 = torch.stack([sc, tc, torch.ones_like(sc)], -1)
    return (mats * st1[..., None, :]).sum(-1)


def cube_directions(resolution: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Unit directions of every cube-map texel centre, ``[6,R,R,3]``.

    ``dirs[f, i, j] = normalize(face_to_dir(f, 2 (j + 0.5) / R - 1, 2 (i + 0.5) / R - 1))``:
    column ``j`` is the face-local s axis, row ``i`` the t axis (see the module docstring).

    Example:
        >>> cube_directions(1)[:, 0, 0]
        tensor([[ 1.,  0.,  0.],
                [-1.,  0.,  0.],
                [ 0.,  1.,  0.],
                [ 0., -1.,  0.],
                [ 0.,  0.,  1.],
                [ 0.,  0., -1.]])
    """
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1:
        raise InputError(f"resolution must be a positive integer; got {resolution!r}.")
    r = int(resolution)
    c = (torch.arange(r, device=device, dtype=dtype) + 0.5) * (2.0 / r) - 1.0
    tc, sc = torch.meshgrid(c, c, indexing="ij")
    face = torch.arange(6, device=device)[:, None, None].expand(6, r, r)
    d = face_to_dir(face, sc.expand(6, r, r), tc.expand(6, r, r))
    return d / d.norm(dim=-1, keepdim=True)


def latlong_directions(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Unit directions ``[H,W,3]`` of the texel centres of an ``H x W`` lat-long map (module docstring).

    Example:
        >>> latlong_directions(1, 2)[0].round(decimals=4) + 0.0   # u = 0.25 looks down -x, u = 0.75 down +x
        tensor([[-1.,  0.,  0.],
                [ 1.,  0.,  0.]])
    """
    theta = (torch.arange(height, device=device, dtype=dtype) + 0.5) * (math.pi / height)
    phi = (torch.arange(width, device=device, dtype=dtype) + 0.5) * (2 * math.pi / width) - math.pi
    theta, phi = torch.meshgrid(theta, phi, indexing="ij")
    st = torch.sin(theta)
    return torch.stack([st * torch.sin(phi), torch.cos(theta), -st * torch.cos(phi)], -1)


def dir_to_latlong(d: torch.Tensor) -> torch.Tensor:
    """Lat-long texture coordinates ``uv[...,2]`` of directions ``d[...,3]`` (any length).

    ``u = atan2(d_x, -d_z) / (2 pi) + 1/2``, ``v = atan2(sqrt(d_x^2 + d_z^2), d_y) / pi``.

    Example:
        >>> dir_to_latlong(torch.tensor([[0., 0., -1.], [1., 1., 0.]]))   # -z; +x tilted 45 deg up
        tensor([[0.5000, 0.5000],
                [0.7500, 0.2500]])
    """
    x, y, z = d.unbind(-1)
    u = torch.atan2(x, -z) * (0.5 / math.pi) + 0.5
    v = torch.atan2(torch.sqrt(x * x + z * z), y) * (1.0 / math.pi)
    return torch.stack([u, v], -1)


def latlong_to_cube(latlong, resolution: int) -> torch.Tensor:
    """Resample a lat-long map ``[H,W,C]`` (or ``[B,H,W,C]``) into a cube map ``[6,R,R,C]`` (``[B,6,R,R,C]``).

    ``cube[f,i,j] = texture(latlong, dir_to_latlong(cube_directions(R)[f,i,j]))``, bilinear with
    u wrapping around and v clamped at the poles. When the lat-long map is finer than the cube
    (``lambda = log2(2 H / (pi R)) > 0``, the ratio of a cube texel's angle at a face centre,
    ``2/R``, to a lat-long texel's, ``pi/H``) it is read at mip level ``lambda`` instead, so
    the result is a filtered, not an aliased, copy. Differentiable w.r.t. ``latlong``.

    Example:
        >>> cube = latlong_to_cube(torch.ones(16, 32, 3), 8)
        >>> tuple(cube.shape), round(float(cube.min()), 5)
        ((6, 8, 8, 3), 1.0)
    """
    from .texture import texture  # texture imports this module's face math

    latlong = float_tensor("latlong", latlong, "[H,W,C] or [B,H,W,C]", ndims=(3, 4))
    unbatched = latlong.dim() == 3
    ll = latlong[None] if unbatched else latlong
    cube_directions(resolution)  # validates resolution
    r = int(resolution)
    uv = dir_to_latlong(cube_directions(r, ll.device, ll.dtype)).reshape(1, 6 * r, r, 2)
    uv = uv.expand(ll.shape[0], -1, -1, -1)
    lam = math.log2(2.0 * ll.shape[1] / (math.pi * r))
    bias = None if lam <= 0 else uv.new_full(uv.shape[:3], lam)
    out = texture(ll, uv, mip_level_bias=bias, boundary=("wrap", "clamp"))
    out = out.reshape(ll.shape[0], 6, r, r, ll.shape[-1])
    return out[0] if unbatched else out


def cube_to_latlong(cube, height: int, width: int) -> torch.Tensor:
    """Resample a cube map ``[6,R,R,C]`` (or ``[B,6,R,R,C]``) into a lat-long map ``[H,W,C]`` (``[B,H,W,C]``).

    ``latlong[i,j] = texture(cube, latlong_directions(H, W)[i,j], boundary="cube")``: bilinear,
    across face edges as :func:`unrender.render.texture.texture` does; when the cube is finer
    than the lat-long map (``lambda = log2(pi R / (2 H)) > 0``) it is read at mip level ``lambda``.
    Differentiable w.r.t. ``cube``.

    Example:
        >>> ll = cube_to_latlong(torch.ones(6, 8, 8, 3), 16, 32)
        >>> tuple(ll.shape), round(float(ll.min()), 5)
        ((16, 32, 3), 1.0)
    """
    from .texture import texture

    cube = float_tensor("cube", cube, "[6,R,R,C] or [B,6,R,R,C]", ndims=(4, 5))
    if cube.shape[-4] != 6 or cube.shape[-3] != cube.shape[-2]:
        raise InputError(f"cube must have shape [6,R,R,C] or [B,6,R,R,C]; got {tuple(cube.shape)}.")
    for name, val in (("height", height), ("width", width)):
        if isinstance(val, bool) or int(val) != val or val < 1:
            raise InputError(f"{name} must be a positive integer; got {val!r}.")
    unbatched = cube.dim() == 4
    cb = cube[None] if unbatched else cube
    h, w = int(height), int(width)
    d = latlong_directions(h, w, cb.device, cb.dtype)[None].expand(cb.shape[0], -1, -1, -1)
    lam = math.log2(math.pi * cb.shape[2] / (2.0 * h))
    bias = None if lam <= 0 else d.new_full(d.shape[:3], lam)
    out = texture(cb, d, mip_level_bias=bias, boundary="cube")
    return out[0] if unbatched else out
