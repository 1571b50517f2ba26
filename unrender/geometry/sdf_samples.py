"""SDF supervision for implicit shape models: query points near and around a closed mesh, with signed distances.

The sampling follows LIST (Arshad & Beksi, ICCV 2023), as DISN-style SDF training does:

* **shells** -- points on the surface (uniform by area) moved by isotropic Gaussian noise
  ``x = s + N(0, sigma^2 I)``; by default ``sigma = 0.003, 0.01, 0.07`` for 45 %, 44 % and 10 % of the
  points (in the units of the mesh; our shapes have longest side 1);
* **uniform** -- the remaining ``1 - sum(fractions)`` (1 %) uniformly in the mesh's bounding box grown by
  ``padding`` times its longest side on every side (default 0.1: the region a marching-cubes grid
  around the shape covers).

Signed distances come from :func:`unrender.geometry.inside.signed_distance`: the exact distance to the
nearest triangle (a bounding-volume hierarchy), negative inside, with inside/outside decided by exact
ray parity -- robust for any closed (watertight) mesh, self-intersecting unions included (see
:mod:`unrender.geometry.inside`). Open meshes get a majority vote of three rays, which is not robust:
give watertight meshes.

:func:`cached_sdf_samples` stores the samples of a mesh file in an ``.npz`` named by the SHA-256 of the
file's bytes and of the sampling parameters, so a changed mesh or changed parameters never reuse stale
samples.

Example:
    >>> from unrender.geometry.primitives import icosphere
    >>> s = sample_sdf_points(icosphere(3, radius=0.5), 2000, generator=torch.Generator().manual_seed(0))
    >>> s.points.shape, s.sdf.shape, bool((s.sdf.abs() < 0.5).all())
    (torch.Size([2000, 3]), torch.Size([2000]), True)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, InputError
from ..mesh import Mesh
from .inside import signed_distance

#: LIST's shell widths and the fractions of points drawn from each (the rest is uniform).
DEFAULT_SIGMAS = (0.003, 0.01, 0.07)
DEFAULT_FRACTIONS = (0.45, 0.44, 0.10)
#: Bumped when the sampling algorithm changes, so that old cache files are not reused.
_CACHE_VERSION = 1


@dataclass
class SDFSamples:
    """Query points and their signed distances.

    Attributes:
        points: ``[N,3]`` query positions (the mesh's dtype).
        sdf: ``[N]`` signed distances, negative inside.
        group: ``[N]`` int64: ``k`` for a point of shell ``k`` (``sigmas[k]``), ``len(sigmas)`` for uniform ones.
    """

    points: torch.Tensor
    sdf: torch.Tensor
    group: torch.Tensor


def _arrays(mesh) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(mesh, Mesh):
        return mesh.vertices.detach(), mesh.faces
    if isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        v = torch.as_tensor(mesh[0])
        return (v if v.is_floating_point() else v.float()).detach(), torch.as_tensor(mesh[1], dtype=torch.int64)
    raise InputError(f"mesh must be an unrender Mesh or a (vertices[V,3], faces[F,3]) pair; got {type(mesh).__name__}.")


def sample_surface(vertices, faces, n: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniformly distributed (by area) on the triangles ``vertices[V,3]``, ``faces[F,3]``.

    A face is drawn with probability ``area_f / sum(area)``, then a point with barycentric weights
    ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)`` for uniform ``r1, r2`` (uniform on the triangle).

    Returns:
        ``(points[n,3], face_index[n])``; face normals are ``Mesh.face_normals()[face_index]``.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((2.0, 2.0, 2.0))
        >>> p, f = sample_surface(m.vertices, m.faces, 100, torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(p.abs().amax(1), torch.ones(100)))      # every point on a face of the cube
        True
    """
    v = torch.as_tensor(vertices)
    f = torch.as_tensor(faces, dtype=torch.int64)
    if n < 0:
        raise InputError(f"the number of samples must be >= 0; got {n}.")
    tri = v[f]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1)
    if f.shape[0] == 0 or not bool(area.sum() > 0):
        raise InputError("the mesh has no triangle of positive area to sample points on.")
    face = torch.multinomial(area.double(), n, replacement=True, generator=generator) if n else f.new_zeros(0)
    r = torch.rand(n, 2, generator=generator, dtype=torch.float64).to(v.dtype)
    s = r[:, :1].sqrt()
    w = torch.cat([1 - s, s * (1 - r[:, 1:]), s * r[:, 1:]], 1)
    return (tri[face] * w[..., None]).sum(1), face


def sample_sdf_points(mesh, n: int, sigmas=DEFAULT_SIGMAS, fractions=DEFAULT_FRACTIONS, padding: float = 0.1,
                      generator: torch.Generator | None = None) -> SDFSamples:
    """Near-surface and uniform query points of a closed mesh with their signed distances (module docstring).

    Shell ``k`` gets ``round(fractions[k] n)`` points ``s + sigma_k z`` (``s`` uniform on the surface,
    ``z ~ N(0, I)``); the uniform part the remaining ``n - sum`` points in the padded bounding box.
    Distances: :func:`unrender.geometry.inside.signed_distance` (negative inside).

    Args:
        mesh: :class:`Mesh` or ``(vertices[V,3], faces[F,3])``; should be watertight.
        n: number of points.
        sigmas: shell standard deviations (mesh units).
        fractions: share of points per shell (``sum <= 1``).
        padding: uniform box = bounding box grown by ``padding * longest side`` on each side.
        generator: torch random generator (reproducibility).
    Returns:
        :class:`SDFSamples` with ``points[n,3]``, ``sdf[n]``, ``group[n]`` (points in shell order, then uniform).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> s = sample_sdf_points(box((1.0, 1.0, 1.0)), 1000, generator=torch.Generator().manual_seed(1))
        >>> int((s.group == 3).sum())                                  # 1 % uniform
        10
    """
    v, f = _arrays(mesh)
    sigmas, fractions = tuple(float(s) for s in sigmas), tuple(float(x) for x in fractions)
    if len(sigmas) != len(fractions) or any(s <= 0 for s in sigmas) or any(x < 0 for x in fractions):
        raise InputError(f"sigmas and fractions must be equally long, sigmas > 0 and fractions >= 0; got {sigmas} "
                         f"and {fractions}.")
    if sum(fractions) > 1 + 1e-9:
        raise InputError(f"fractions must sum to at most 1 (the rest is uniform); got {sum(fractions):.4g}.")
    if n < 1 or padding < 0:
        raise InputError(f"need n >= 1 and padding >= 0; got n={n}, padding={padding}.")
    counts = [int(round(x * n)) for x in fractions]
    while sum(counts) > n:  # rounding may overshoot by a point or two
        counts[int(np.argmax(counts))] -= 1
    n_uniform = n - sum(counts)
    dtype = v.dtype
    surf, _ = sample_surface(v, f, sum(counts), generator)
    noise = torch.randn(sum(counts), 3, generator=generator, dtype=torch.float64).to(dtype)
    scale = torch.cat([torch.full((c,), s, dtype=dtype) for c, s in zip(counts, sigmas)])[:, None]
    used = v[torch.unique(f)]
    lo, hi = used.amin(0), used.amax(0)
    pad = padding * float((hi - lo).max())
    uni = torch.rand(n_uniform, 3, generator=generator, dtype=torch.float64).to(dtype)
    uniform = (lo - pad) + uni * ((hi - lo) + 2 * pad)
    points = torch.cat([surf + scale * noise, uniform])
    group = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)]
                      + [torch.full((n_uniform,), len(sigmas), dtype=torch.int64)])
    sdf = signed_distance(v, f, points).to(dtype)
    return SDFSamples(points, sdf, group)


def _cache_key(data: bytes, params: dict) -> str:
    h = hashlib.sha256(data)
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()


def cached_sdf_samples(mesh_path, cache_dir, n: int, seed: int = 0, sigmas=DEFAULT_SIGMAS,
                       fractions=DEFAULT_FRACTIONS, padding: float = 0.1) -> SDFSamples:
    """:func:`sample_sdf_points` of the mesh file ``mesh_path``, stored in and reloaded from ``cache_dir``.

    The cache file is ``cache_dir/<stem>-<key>.npz`` with ``key`` = SHA-256 of the mesh file's bytes and of
    ``(n, seed, sigmas, fractions, padding, version)``: any change of the mesh or of a parameter makes a new
    file. Points and distances are stored float32 (``points``, ``sdf``, ``group``); writes go to a temporary
    file renamed into place, so a crash never leaves a truncated cache file.

    Args:
        mesh_path: OBJ/PLY/GLB read with :func:`unrender.io.mesh_files.load_mesh` (watertight expected).
        cache_dir: folder for the cache files (created).
        n, seed: number of points and the seed of the ``torch.Generator``.
        sigmas, fractions, padding: as for :func:`sample_sdf_points`.
    Returns:
        :class:`SDFSamples` (float32), identical on every call with the same file and parameters.

    Example:
        >>> s = cached_sdf_samples("coll/03001627/<model>/mesh.obj", "cache/sdf", 100_000)   # doctest: +SKIP
    """
    from ..io.mesh_files import load_mesh

    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise DataError(f"Mesh file {mesh_path} does not exist; check the path.")
    params = {"n": int(n), "seed": int(seed), "sigmas": [float(s) for s in sigmas],
              "fractions": [float(x) for x in fractions], "padding": float(padding), "version": _CACHE_VERSION}
    key = _cache_key(mesh_path.read_bytes(), params)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{mesh_path.stem}-{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path) as d:
                out = SDFSamples(*(torch.from_numpy(d[k]) for k in ("points", "sdf", "group")))
            if out.points.shape == (n, 3) and out.sdf.shape == (n,):
                return out
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign file: recompute and overwrite it below
    mesh = load_mesh(mesh_path)
    s = sample_sdf_points((mesh.vertices.double(), mesh.faces), n, sigmas, fractions, padding,
                          torch.Generator().manual_seed(int(seed)))
    out = SDFSamples(s.points.float(), s.sdf.float(), s.group)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, points=out.points.numpy(), sdf=out.sdf.numpy(), group=out.group.numpy())
    os.replace(tmp, path)
    return out
