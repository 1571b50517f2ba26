"""Families of procedural objects for synthetic datasets, deterministic from a seed.

:func:`procedural_object` returns a closed (watertight) triangle mesh with a packed uv atlas,
centred at the origin with its longest bounding-box side = 1. Families are chosen to cover the
hard cases of inverse rendering: concave interiors (``vase``, ``bowl``), a hole (``mug``), thin
parts (``table``, ``chair``), a thin self-near tube (``knot``) and a smooth organic shape (``blob``).
Parts of multi-part objects overlap and are merged by a boolean union, so the mesh is the object's
outer surface: no face lies inside another part (a ground truth with such faces would count surface
no camera can see in Chamfer and F-score).

Example:
    >>> m = procedural_object("mug", seed=3)
    >>> 2000 <= m.num_faces <= 20000
    True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh
from .primitives import (assemble, box, cylinder, icosphere_arrays, lathe, mesh_from_charts, normalize_to_unit_box,
                         spherical_uvs, torus_knot, tube_charts)

FAMILIES = ("vase", "bowl", "mug", "table", "chair", "knot", "blob")


def procedural_object(family: str, seed: int) -> Mesh:
    """A random object of ``family`` (one of :data:`FAMILIES`); the same ``(family, seed)`` gives the same mesh.

    Returns a :class:`Mesh` with ``vertices[V,3]`` in a box of longest side 1 centred at the origin,
    ``faces[F,3]`` (2k to 20k triangles, closed and outward-facing), ``uvs[T,2]`` in [0,1] and
    ``uv_faces[F,3]``. Randomness comes from a local ``numpy.random.default_rng(seed)``.

    Example:
        >>> a, b = procedural_object("vase", 0), procedural_object("vase", 0)
        >>> bool((a.vertices == b.vertices).all())
        True
    """
    if family not in _BUILDERS:
        raise InputError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}.")
    rng = np.random.default_rng([int(seed), FAMILIES.index(family)])
    return normalize_to_unit_box(_BUILDERS[family](rng))


def _vase_profile(rng, n: int = 48) -> np.ndarray:
    """(radius, y) of a vase: outer wall up from the base, a rounded lip, inner wall back down."""
    height = rng.uniform(0.8, 1.4)
    base = rng.uniform(0.18, 0.3)
    belly, neck = rng.uniform(0.3, 0.5), rng.uniform(0.12, 0.25)
    belly_at, lip = rng.uniform(0.25, 0.5), rng.uniform(0.15, 0.3)
    wall = rng.uniform(0.025, 0.045)
    t = np.linspace(0, 1, n)
    # smooth radius curve through base -> belly -> neck -> lip
    knots_t = np.array([0.0, belly_at, 0.8, 1.0])
    knots_r = np.array([base, belly, neck, lip])
    r = np.interp(t, knots_t, knots_r)
    r = np.convolve(np.pad(r, 3, mode="edge"), np.ones(7) / 7, mode="valid")
    y = t * height
    outer = np.stack([r, y], 1)
    inner = np.stack([np.maximum(r - wall, 0.02), y], 1)[::-1]
    inner = inner[inner[:, 1] > wall * 2]  # inner floor sits above the outer base
    inner[0, 1] = height - 1e-3  # keep the lip rim distinct from the outer top ring
    lip_arc = np.linspace(0, math.pi, 6)[1:-1]
    rim = np.stack([r[-1] - wall / 2 + wall / 2 * np.cos(lip_arc), height + wall / 2 * np.sin(lip_arc)], 1)
    floor = np.array([[0.0, inner[-1, 1]]])
    return np.concatenate([[[0.0, 0.0]], outer, rim, inner, floor])


def _vase(rng) -> Mesh:
    return lathe(_vase_profile(rng), segments=64)


def _bowl(rng) -> Mesh:
    radius = rng.uniform(0.4, 0.6)
    depth = rng.uniform(0.2, 0.45)
    wall = rng.uniform(0.02, 0.04)
    foot = rng.uniform(0.12, 0.2) * radius / 0.5
    a = np.linspace(0.0, math.pi / 2, 32)
    outer = np.stack([foot + (radius - foot) * np.sin(a), depth * (1 - np.cos(a))], 1)
    inner = np.stack([np.maximum(foot - wall + (radius - foot) * np.sin(a), 0.0) * (1 - wall / radius),
                      wall + (depth - wall) * (1 - np.cos(a))], 1)[::-1]
    inner[0, 1] = depth - 1e-3
    inner = inner[inner[:, 0] > 1e-3]
    lip = np.stack([radius - wall / 2 + wall / 2 * np.cos(np.linspace(0, math.pi, 6)[1:-1]),
                    depth + wall / 2 * np.sin(np.linspace(0, math.pi, 6)[1:-1])], 1)
    prof = np.concatenate([[[0.0, 0.0]], outer, lip, inner, [[0.0, wall]]])
    return lathe(prof, segments=72)


def _mug(rng) -> Mesh:
    radius = rng.uniform(0.3, 0.4)
    height = rng.uniform(0.7, 1.0)
    wall = rng.uniform(0.06, 0.08)
    ys = np.linspace(0, height, 16)
    outer = np.stack([np.full_like(ys, radius), ys], 1)
    inner = np.stack([np.full_like(ys, radius - wall), ys], 1)[::-1]
    inner = inner[inner[:, 1] > wall]
    inner[0, 1] = height - 1e-3
    lip = np.stack([radius - wall / 2 + wall / 2 * np.cos(np.linspace(0, math.pi, 6)[1:-1]),
                    height + wall / 2 * np.sin(np.linspace(0, math.pi, 6)[1:-1])], 1)
    floor = np.linspace(radius - wall, 0, 6)[1:, None] * np.array([[1.0, 0.0]]) + np.array([[0.0, wall]])
    base = np.linspace(0, radius, 6)[:-1, None] * np.array([[1.0, 0.0]])
    body = lathe(np.concatenate([base, outer, lip, inner, floor]), segments=64)
    # Handle: a tube along a rounded "D" whose straight side is buried inside the wall.
    tube_r = min(wall * 0.4, 0.03)
    x_in = radius - wall / 2
    reach = rng.uniform(0.18, 0.28)
    h_lo, h_hi = height * rng.uniform(0.15, 0.3), height * rng.uniform(0.7, 0.85)
    pts = []
    for t in np.linspace(0, 1, 24, endpoint=False):  # buried straight part, bottom to top
        pts.append([x_in, h_lo + (h_hi - h_lo) * t])
    cy, ry = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
    for a in np.linspace(math.pi / 2, -math.pi / 2, 40, endpoint=False):  # outer arc, top to bottom
        pts.append([x_in + reach * math.cos(a) ** 0.7, cy + ry * math.sin(a)])
    pts = np.array(pts)
    curve = np.stack([pts[:, 0], pts[:, 1], np.zeros(len(pts))], 1)
    handle = mesh_from_charts(tube_charts(curve, tube_r, sides=12, n_charts=2))
    return assemble([body, handle], union=True)


def _leg(rng, x, z, top, thickness, round_legs):
    if round_legs:
        c = cylinder(thickness / 2, top, segments=16, rings=6, cap_rings=1)
        v = c.vertices + torch.tensor([x, top / 2, z], dtype=torch.float32)
        return Mesh(vertices=v, faces=c.faces, uvs=c.uvs, uv_faces=c.uv_faces)
    return box((thickness, top, thickness), subdivisions=8, center=(x, top / 2, z))


def _corner_legs(rng, half_x: float, half_z: float, top: float, leg_t: float, round_legs: bool) -> list[Mesh]:
    """Four legs at ``(+-half_x, +-half_z)`` reaching up to height ``top`` (order: x-, z- first)."""
    return [_leg(rng, sx * half_x, sz * half_z, top, leg_t, round_legs) for sx in (-1, 1) for sz in (-1, 1)]


def _table(rng) -> Mesh:
    w, d = rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.9)
    h = rng.uniform(0.5, 0.8)
    top_t = rng.uniform(0.04, 0.08)
    leg_t = rng.uniform(0.04, 0.08)
    inset = rng.uniform(0.03, 0.1)
    round_legs = bool(rng.integers(0, 2))
    parts = [box((w, top_t, d), subdivisions=24, center=(0.0, h - top_t / 2, 0.0))]
    # legs end inside the top
    parts += _corner_legs(rng, w / 2 - inset - leg_t / 2, d / 2 - inset - leg_t / 2, h - top_t / 2, leg_t, round_legs)
    return assemble(parts, union=True)


def _chair(rng) -> Mesh:
    w, d = rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.55)
    seat_h, seat_t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.07)
    back_h = rng.uniform(0.35, 0.55)
    leg_t = rng.uniform(0.035, 0.055)
    round_legs = bool(rng.integers(0, 2))
    parts = [box((w, seat_t, d), subdivisions=24, center=(0.0, seat_h - seat_t / 2, 0.0))]
    parts += _corner_legs(rng, w / 2 - leg_t, d / 2 - leg_t, seat_h - seat_t / 2, leg_t, round_legs)
    back_t = rng.uniform(0.03, 0.05)
    z_back = -d / 2 + back_t / 2 + 0.005
    # Two posts rising from the seat and a panel between them, each overlapping its neighbour.
    post_h = back_h + seat_t * 0.5
    for sx in (-1, 1):
        parts.append(box((leg_t, post_h, back_t * 1.1), subdivisions=12,
                         center=(sx * (w / 2 - leg_t), seat_h - seat_t / 2 + post_h / 2, z_back)))
    panel_h = back_h * rng.uniform(0.35, 0.6)
    parts.append(box((w - 2 * leg_t + leg_t * 0.6, panel_h, back_t), subdivisions=12,
                     center=(0.0, seat_h + back_h - panel_h / 2 - 0.02, z_back)))
    return assemble(parts, union=True)


def _knot(rng) -> Mesh:
    p, q = [(2, 3), (3, 2), (2, 5), (3, 4), (3, 5)][int(rng.integers(0, 5))]
    # Tube thinner than half the closest approach of the strands, which shrinks with p and q.
    tube = rng.uniform(0.035, 0.06) * 3.0 / max(p, q)
    return torus_knot(p, q, radius=0.35, tube_radius=tube, samples=96 * max(p, q), sides=12, n_charts=2 * max(p, q))


def _blob(rng) -> Mesh:
    v, f = icosphere_arrays(4)
    # Smooth random displacement: a few random low-frequency waves on the sphere.
    disp = np.zeros(len(v))
    for k in range(6):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        freq = rng.uniform(1.0, 3.0)
        disp += rng.uniform(0.05, 0.15) / (1 + 0.5 * k) * np.sin(freq * (v @ direction) * math.pi
                                                                 + rng.uniform(0, 2 * math.pi))
    scale = rng.uniform(0.7, 1.3, size=3)
    pts = v * (0.5 * (1 + np.clip(disp, -0.4, 0.6)))[:, None] * scale
    uv, uf = spherical_uvs(v, f)
    return Mesh(vertices=torch.tensor(pts, dtype=torch.float32), faces=torch.tensor(f),
                uvs=torch.tensor(uv, dtype=torch.float32), uv_faces=torch.tensor(uf))


_BUILDERS = {"vase": _vase, "bowl": _bowl, "mug": _mug, "table": _table, "chair": _chair, "knot": _knot,
             "blob": _blob}
