"""Procedural watertight triangle meshes with texture coordinates.

Every primitive is built from *charts*: patches of the surface, each with its own texture
coordinates proportional to surface length (so texels are roughly square). Charts share positions
along their borders, which are welded, so every mesh is closed (each edge in exactly two faces) and
outward-facing, while texture coordinates are indexed separately (``uv_faces``) and jump at seams.
Charts are packed side by side into [0,1]^2 with a small gutter at equal texel density.

Shapes are centred at the origin and sized by their arguments; :func:`assemble` concatenates
parts (each closed, so the union is closed too) into one mesh with one shared uv atlas.

Example:
    >>> m = torus(major_radius=0.4, minor_radius=0.1)
    >>> m.vertices.shape[1], bool(m.uvs.min() >= 0 and m.uvs.max() <= 1)
    (3, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh
from .boolean import union_parts

# A chart is (points[N,3], uv_world[N,2], tris[M,3]): uvs in world-length units before packing.
Chart = tuple


def grid_chart(points: np.ndarray, uv: np.ndarray) -> Chart:
    """Chart from a grid ``points[R,C,3]`` / ``uv[R,C,2]``: two triangles per cell.

    Example:
        >>> p = np.zeros((2, 2, 3)); p[1, :, 0] = 1; p[:, 1, 1] = 1
        >>> grid_chart(p, p[..., :2])[2].shape
        (2, 3)
    """
    r, c = points.shape[:2]
    idx = np.arange(r * c).reshape(r, c)
    a, b, cc, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    tris = np.concatenate([np.stack([a, b, cc], -1).reshape(-1, 3), np.stack([a, cc, d], -1).reshape(-1, 3)])
    return points.reshape(-1, 3), uv.reshape(-1, 2), tris


def pack_rectangles(sizes: np.ndarray, gutter: float) -> tuple[np.ndarray, float]:
    """Shelf-pack rectangles ``sizes[K,2]`` (width, height); returns offsets ``[K,2]`` and the square side.

    Tallest first, rows filled left to right up to a width near sqrt of the total area.

    Example:
        >>> off, side = pack_rectangles(np.array([[1.0, 1.0], [1.0, 1.0]]), 0.0)
        >>> side
        2.0
    """
    sizes = np.asarray(sizes, dtype=np.float64) + gutter
    total = float((sizes[:, 0] * sizes[:, 1]).sum())
    target = max(math.sqrt(total) * 1.05, float(sizes[:, 0].max()))
    order = np.argsort(-sizes[:, 1], kind="stable")
    offsets = np.zeros_like(sizes)
    x = y = shelf_h = width = 0.0
    for k in order:
        w, h = sizes[k]
        if x > 0 and x + w > target:
            y += shelf_h
            x = shelf_h = 0.0
        offsets[k] = (x + gutter / 2, y + gutter / 2)
        x += w
        shelf_h = max(shelf_h, h)
        width = max(width, x)
    return offsets, float(max(width, y + shelf_h))


def _pack_uv_sets(uv_sets: list[np.ndarray], gutter_frac: float = 0.02) -> list[np.ndarray]:
    """Translate/scale uv sets (world units) into disjoint boxes inside [0,1]^2 at one common scale."""
    mins = [u.min(axis=0) for u in uv_sets]
    sizes = np.array([u.max(axis=0) - m for u, m in zip(uv_sets, mins)])
    sizes = np.maximum(sizes, 1e-9)
    gutter = gutter_frac * math.sqrt(float((sizes[:, 0] * sizes[:, 1]).sum()))
    offsets, side = pack_rectangles(sizes, gutter)
    return [np.clip((u - m + o) / side, 0.0, 1.0) for u, m, o in zip(uv_sets, mins, offsets)]


def mesh_from_charts(charts: list[Chart], weld_tol: float = 1e-9) -> Mesh:
    """Build a closed, outward-oriented :class:`Mesh` from charts whose borders coincide.

    Positions closer than ``weld_tol`` are merged, triangles that collapse are dropped (poles), uvs
    are packed into [0,1]^2 and kept separately indexed. The whole mesh is flipped if its signed
    volume is negative. Returns float32 ``vertices[V,3]``, ``faces[F,3]``, ``uvs[T,2]``, ``uv_faces[F,3]``.

    Example:
        >>> m = mesh_from_charts(box_charts((1.0, 1.0, 1.0), 2))
        >>> m.faces.shape
        torch.Size([48, 3])
    """
    uvs = _pack_uv_sets([c[1] for c in charts])
    pts = np.concatenate([c[0] for c in charts]).astype(np.float64)
    offs = np.cumsum([0] + [len(c[0]) for c in charts])
    tris = np.concatenate([c[2] + o for c, o in zip(charts, offs[:-1])])
    key = np.round(pts / weld_tol).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    faces = inv[tris]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    faces, uv_faces = faces[keep], tris[keep]
    verts = pts[first]
    # Drop uv rows no face uses (collapsed pole corners), keeping the order.
    used = np.unique(uv_faces)
    remap = np.full(len(pts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    uv_all = np.concatenate(uvs)[used]
    uv_faces = remap[uv_faces]
    vol = signed_volume(verts, faces)
    if vol < 0:
        faces, uv_faces = faces[:, ::-1], uv_faces[:, ::-1]
    return Mesh(vertices=torch.tensor(verts, dtype=torch.float32), faces=torch.tensor(faces.copy()),
                uvs=torch.tensor(uv_all, dtype=torch.float32), uv_faces=torch.tensor(uv_faces.copy()))


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    """Volume enclosed by a closed mesh, ``sum_f v0 . (v1 x v2) / 6`` (divergence theorem): positive when the
    faces ``f[F,3]`` over ``v[V,3]`` face outwards.

    Example:
        >>> round(signed_volume(box((1.0, 2.0, 3.0)).vertices.double().numpy(), box((1.0, 2.0, 3.0)).faces.numpy()), 6)
        6.0
    """
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


# ------------------------------------------------------------------------------------ primitives


def box_charts(size=(1.0, 1.0, 1.0), subdivisions: int = 4, center=(0.0, 0.0, 0.0)) -> list[Chart]:
    """Six planar charts of an axis-aligned box (see :func:`box`)."""
    sx, sy, sz = (float(s) / 2 for s in size)
    c = np.asarray(center, dtype=np.float64)
    half = np.array([sx, sy, sz])
    charts = []
    for axis in range(3):
        for sign in (1.0, -1.0):
            a, b = (axis + 1) % 3, (axis + 2) % 3
            if sign < 0:
                a, b = b, a  # keeps (a x b) pointing outwards
            n = max(1, int(subdivisions))
            na = max(1, round(n * half[a] / half.max()))
            nb = max(1, round(n * half[b] / half.max()))
            ta = np.linspace(-half[a], half[a], na + 1)
            tb = np.linspace(-half[b], half[b], nb + 1)
            g = np.zeros((na + 1, nb + 1, 3))
            g[..., axis] = sign * half[axis]
            g[..., a] = ta[:, None]
            g[..., b] = tb[None, :]
            uv = np.stack([g[..., a], g[..., b]], -1)  # (du x dv) along the outward normal: not mirrored
            charts.append(grid_chart(g + c, uv))
    return charts


def box(size=(1.0, 1.0, 1.0), subdivisions: int = 4, center=(0.0, 0.0, 0.0)) -> Mesh:
    """Axis-aligned box of ``size = (sx, sy, sz)`` centred at ``center``, each face a grid.

    The longest side gets ``subdivisions`` cells, the others proportionally fewer; six uv charts.
    Returns a :class:`Mesh` with ``vertices[V,3]``, ``faces[F,3]``, ``uvs[T,2]``, ``uv_faces[F,3]``.

    Example:
        >>> box((2.0, 1.0, 1.0), subdivisions=2).faces.shape
        torch.Size([20, 3])
    """
    if min(float(s) for s in size) <= 0:
        raise InputError(f"size must be three positive lengths; got {size!r}.")
    return mesh_from_charts(box_charts(size, subdivisions, center))


def _corner_rows(profile: np.ndarray, angle_deg: float) -> list[int]:
    d = np.diff(profile, axis=0)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    cosang = (d[:-1] * d[1:]).sum(1)
    return [i + 1 for i in np.flatnonzero(cosang < math.cos(math.radians(angle_deg)))]


def lathe_charts(profile, segments: int = 48, corner_angle: float = 40.0) -> list[Chart]:
    """Charts of the surface of revolution of ``profile[N,2] = (radius, y)`` about +y (see :func:`lathe`)."""
    prof = np.asarray(profile, dtype=np.float64)
    if prof.ndim != 2 or prof.shape[1] != 2 or prof.shape[0] < 2:
        raise InputError(f"profile must have shape [N,2] (radius, y) with N >= 2; got {prof.shape}.")
    if (prof[:, 0] < 0).any() or not np.isfinite(prof).all():
        raise InputError("profile radii must be finite and >= 0.")
    if prof[0, 0] > 0:  # close the bottom with a disc
        prof = np.concatenate([[[0.0, prof[0, 1]]], prof])
    if prof[-1, 0] > 0:
        prof = np.concatenate([prof, [[0.0, prof[-1, 1]]]])
    s = int(segments)
    phi = 2 * math.pi * np.arange(s + 1) / s
    sin, cos = np.sin(phi), np.cos(phi)
    sin[-1], cos[-1] = sin[0], cos[0]  # exact seam so the weld is exact
    breaks = [0] + _corner_rows(prof, corner_angle) + [len(prof) - 1]
    charts = []
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        rows = prof[lo:hi + 1]
        g = np.stack([rows[:, :1] * sin[None], np.repeat(rows[:, 1:], s + 1, 1), rows[:, :1] * cos[None]], -1)
        flat = np.ptp(rows[:, 1]) < 1e-9 * max(1.0, float(np.abs(rows).max()))
        if flat:  # discs and annuli: planar projection, no distortion
            # A ring traversed outwards faces -y, inwards +y; flip z so textures are never mirrored.
            facing_down = rows[-1, 0] > rows[0, 0]
            uv = np.stack([g[..., 0], g[..., 2] if facing_down else -g[..., 2]], -1)
        else:
            arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(rows, axis=0), axis=1))])
            r_mean = max(float(rows[:, 0].mean()), 1e-6)
            uv = np.stack([np.broadcast_to(phi[None] * r_mean, g.shape[:2]),
                           np.broadcast_to(arc[:, None], g.shape[:2])], -1)
        charts.append(grid_chart(g, uv))
    return charts


def lathe(profile, segments: int = 48, corner_angle: float = 40.0) -> Mesh:
    """Closed surface of revolution of ``profile[N,2] = (radius, y)`` around the +y axis.

    Open ends (radius > 0) are closed with flat discs. The profile may fold back on itself (outer
    wall up, lip, inner wall down) to make vases and bowls with concave interiors; it must not
    cross itself. Corners sharper than ``corner_angle`` degrees start a new uv chart; flat rings are
    projected from above, curved bands are unrolled (``u = phi * mean radius``, ``v = arc length``).

    Example:
        >>> cup = lathe([[0, 0], [0.5, 0], [0.5, 1], [0.4, 1], [0.4, 0.1], [0, 0.1]], segments=32)
        >>> cup.faces.shape[0] > 0
        True
    """
    return mesh_from_charts(lathe_charts(profile, segments, corner_angle))


def uv_sphere(radius: float = 0.5, rings: int = 24, segments: int = 48) -> Mesh:
    """Latitude-longitude sphere of ``radius``: ``rings`` bands from pole to pole, ``segments`` around.

    Example:
        >>> uv_sphere(0.5, rings=8, segments=16).faces.shape
        torch.Size([224, 3])
    """
    t = np.linspace(0, math.pi, int(rings) + 1)
    prof = np.stack([radius * np.sin(t), -radius * np.cos(t)], 1)
    prof[0, 0] = prof[-1, 0] = 0.0
    return lathe(prof, segments, corner_angle=180.0)


def cylinder(radius: float = 0.5, height: float = 1.0, segments: int = 48, rings: int = 4,
             cap_rings: int = 2) -> Mesh:
    """Closed cylinder around +y, centred at the origin, with ``rings`` side bands and ``cap_rings`` per cap.

    Example:
        >>> cylinder(0.5, 1.0, segments=16).faces.shape[0] > 0
        True
    """
    h = height / 2
    caps = np.linspace(0, radius, int(cap_rings) + 1)
    side = np.linspace(-h, h, int(rings) + 1)
    prof = np.concatenate([np.stack([caps, np.full_like(caps, -h)], 1),
                           np.stack([np.full_like(side, radius), side], 1)[1:],
                           np.stack([caps[::-1], np.full_like(caps, h)], 1)[1:]])
    return lathe(prof, segments)


def torus_charts(major_radius=0.4, minor_radius=0.1, major_segments=48, minor_segments=16, center=(0, 0, 0),
                 axis: str = "y") -> list[Chart]:
    """Single chart of a torus (see :func:`torus`)."""
    a = 2 * math.pi * np.arange(int(major_segments) + 1) / int(major_segments)
    b = 2 * math.pi * np.arange(int(minor_segments) + 1) / int(minor_segments)
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    ca[-1], sa[-1], cb[-1], sb[-1] = ca[0], sa[0], cb[0], sb[0]
    rr = major_radius + minor_radius * cb[None, :]
    x, z = rr * ca[:, None], rr * sa[:, None]
    g = np.stack([x, np.broadcast_to(minor_radius * sb[None, :], x.shape), z], -1)
    if axis == "z":  # rotations (not axis swaps, which would mirror the uvs)
        g = np.stack([g[..., 0], -g[..., 2], g[..., 1]], -1)
    elif axis == "x":
        g = np.stack([g[..., 1], -g[..., 0], g[..., 2]], -1)
    elif axis != "y":
        raise InputError(f"axis must be 'x', 'y' or 'z'; got {axis!r}.")
    uv = np.stack(np.meshgrid(a * major_radius, (2 * math.pi - b) * minor_radius, indexing="ij"), -1)
    return [grid_chart(g + np.asarray(center, dtype=np.float64), uv)]


def torus(major_radius: float = 0.4, minor_radius: float = 0.1, major_segments: int = 48,
          minor_segments: int = 16, axis: str = "y") -> Mesh:
    """Torus around ``axis`` ("x", "y" or "z") with tube radius ``minor_radius`` < ``major_radius``.

    Example:
        >>> torus(0.4, 0.1, 12, 6).faces.shape
        torch.Size([144, 3])
    """
    if not 0 < minor_radius < major_radius:
        raise InputError(f"torus needs 0 < minor_radius < major_radius; got {minor_radius}, {major_radius}.")
    return mesh_from_charts(torus_charts(major_radius, minor_radius, major_segments, minor_segments, axis=axis))


def tube_charts(curve, radius, sides: int = 12, n_charts: int = 1) -> list[Chart]:
    """Charts of a tube of ``radius`` (scalar or ``[N]``) along a *closed* curve ``curve[N,3]``.

    The cross-section frame uses rotation-minimising (parallel-transport) frames, with the twist
    left over after one loop spread evenly so the tube closes without a kink. The tube is cut
    lengthwise into ``n_charts`` uv charts so long tubes pack into a square atlas.
    """
    c = np.asarray(curve, dtype=np.float64)
    n = len(c)
    rad = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n,))
    tang = np.roll(c, -1, 0) - np.roll(c, 1, 0)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    nrm = np.zeros_like(c)
    nrm[0] = np.cross(tang[0], ref)
    nrm[0] /= np.linalg.norm(nrm[0])
    for i in range(1, n + 1):
        t = tang[i % n]
        v = nrm[i - 1] - t * np.dot(nrm[i - 1], t)
        v /= np.linalg.norm(v)
        if i < n:
            nrm[i] = v
        else:
            end = v
    b0 = np.cross(tang[0], nrm[0])
    twist = math.atan2(np.dot(end, b0), np.dot(end, nrm[0]))
    ang = -twist * np.arange(n) / n
    binorm = np.cross(tang, nrm)
    nrm, binorm = (np.cos(ang)[:, None] * nrm + np.sin(ang)[:, None] * binorm,
                   -np.sin(ang)[:, None] * nrm + np.cos(ang)[:, None] * binorm)
    th = 2 * math.pi * np.arange(sides + 1) / sides
    ct, st = np.cos(th), np.sin(th)
    ct[-1], st[-1] = ct[0], st[0]
    ring = rad[:, None, None] * (ct[None, :, None] * nrm[:, None] + st[None, :, None] * binorm[:, None])
    g = c[:, None, :] + ring
    g = np.concatenate([g, g[:1]], 0)  # close the loop exactly
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(np.concatenate([c, c[:1]]), axis=0), axis=1))])
    charts = []
    cuts = np.linspace(0, n, int(n_charts) + 1).round().astype(int)
    r_mean = float(rad.mean())
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        gg = g[lo:hi + 1]
        uv = np.stack(np.meshgrid(arc[lo:hi + 1], (2 * math.pi - th) * r_mean, indexing="ij"), -1)
        charts.append(grid_chart(gg, uv))
    return charts


def torus_knot(p: int = 2, q: int = 3, radius: float = 0.35, tube_radius: float = 0.07, samples: int = 256,
               sides: int = 12, n_charts: int = 4) -> Mesh:
    """Tube along the (p, q) torus knot ``((R + r cos(q t)) cos(p t), r sin(q t), (R + r cos(q t)) sin(p t))``.

    ``R = radius``, ``r = radius / 2``; ``p`` and ``q`` must be coprime. Thin and self-near: a hard case
    for reconstruction.

    Example:
        >>> torus_knot(samples=64, sides=6, n_charts=2).faces.shape
        torch.Size([768, 3])
    """
    if math.gcd(int(p), int(q)) != 1:
        raise InputError(f"torus_knot needs coprime p and q; got {p}, {q}.")
    t = 2 * math.pi * np.arange(int(samples)) / int(samples)
    rr = radius + 0.5 * radius * np.cos(q * t)
    curve = np.stack([rr * np.cos(p * t), 0.5 * radius * np.sin(q * t), rr * np.sin(p * t)], 1)
    return mesh_from_charts(tube_charts(curve, tube_radius, sides, n_charts))


def icosphere_arrays(subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere ``(vertices[V,3], faces[F,3])`` by midpoint subdivision, ``F = 20 * 4^subdivisions``."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                  [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                  [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(int(subdivisions)):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mids = v[uniq[:, 0]] + v[uniq[:, 1]]
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        m = inv.reshape(3, -1) + len(v)
        ab, bc, ca = m[0], m[1], m[2]
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1),
                            np.stack([ab, bc, ca], 1)])
        v = np.concatenate([v, mids])
    return v, f


def spherical_uvs(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner longitude/latitude uvs ``(uvs[T,2], uv_faces[F,3])`` for a star-shaped closed mesh.

    Triangles crossing the longitude seam get ``u`` shifted by one turn; pole corners take the mean
    ``u`` of their triangle; the result is squeezed into [0,1]^2 keeping the 2:1 aspect of a sphere.
    """
    d = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    u = (np.arctan2(d[:, 0], d[:, 2]) / (2 * math.pi)) % 1.0
    v = np.arccos(np.clip(-d[:, 1], -1, 1)) / math.pi
    cu = u[faces]
    wrap = (cu.max(1) - cu.min(1)) > 0.5
    cu = np.where(wrap[:, None] & (cu < 0.5), cu + 1.0, cu)
    pole = np.abs(d[faces][..., 1]) > 1 - 1e-9
    if pole.any():
        mean_other = (cu * ~pole).sum(1) / np.maximum((~pole).sum(1), 1)
        cu = np.where(pole, mean_other[:, None], cu)
    uv = np.stack([cu, v[faces]], -1).reshape(-1, 2)
    uv[:, 0] *= 2 * math.pi
    uv[:, 1] *= math.pi
    uniq, inv = np.unique(np.round(uv, 12), axis=0, return_inverse=True)
    uniq = _pack_uv_sets([uniq])[0]
    return uniq, inv.reshape(-1, 3)


def icosphere(subdivisions: int = 3, radius: float = 0.5) -> Mesh:
    """Icosphere of ``radius`` with ``20 * 4^subdivisions`` faces and longitude/latitude uvs.

    Example:
        >>> icosphere(1).faces.shape
        torch.Size([80, 3])
    """
    v, f = icosphere_arrays(subdivisions)
    uv, uf = spherical_uvs(v, f)
    return Mesh(vertices=torch.tensor(v * radius, dtype=torch.float32), faces=torch.tensor(f),
                uvs=torch.tensor(uv, dtype=torch.float32), uv_faces=torch.tensor(uf))


def assemble(meshes: list[Mesh], gutter: float = 0.02, union: bool = False) -> Mesh:
    """Concatenate parts into one mesh with one uv atlas.

    Positions and faces are stacked (indices offset); each part's uvs ``[T_k,2]`` are scaled by
    ``sqrt(surface area / uv area)`` so all parts share one texel density, then packed side by side
    into [0,1]^2 with a ``gutter`` (fraction of the atlas). Materials are dropped. All parts must have
    uvs, or none. Closed parts give a closed (watertight) result; where they overlap, the stack keeps
    the faces inside other parts unless ``union`` replaces it by the union's outer surface
    (:func:`unrender.geometry.boolean.union_parts`; every part must then be closed).

    Example:
        >>> m = assemble([box((1.0, 0.1, 1.0)), cylinder(0.05, 1.0, segments=12)])
        >>> m.faces.shape[0] == box((1.0, 0.1, 1.0)).faces.shape[0] + cylinder(0.05, 1.0, segments=12).faces.shape[0]
        True
    """
    if not meshes:
        raise InputError("assemble needs a non-empty list of meshes.")
    with_uv = [m.uvs is not None for m in meshes]
    if any(with_uv) and not all(with_uv):
        raise InputError("assemble needs uvs on every part or on none; unwrap the parts without uvs first.")
    verts, faces, uvs, uv_faces = [], [], [], []
    vo = to = 0
    for m in meshes:
        verts.append(m.vertices.detach().cpu().double().numpy())
        faces.append(m.faces.cpu().numpy() + vo)
        vo += m.num_vertices
        if m.uvs is not None:
            uv = m.uvs.detach().cpu().double().numpy()
            uf = m.uv_faces.cpu().numpy()
            tri = verts[-1][m.faces.cpu().numpy()]
            area3 = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
            t = uv[uf]
            e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
            area2 = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
            uvs.append(uv * math.sqrt(area3 / max(area2, 1e-12)))
            uv_faces.append(uf + to)
            to += len(uv)
    out_uv = np.concatenate(_pack_uv_sets(uvs, gutter)) if uvs else None
    stacked = Mesh(vertices=torch.tensor(np.concatenate(verts), dtype=torch.float32),
                   faces=torch.tensor(np.concatenate(faces)),
                   uvs=None if out_uv is None else torch.tensor(out_uv, dtype=torch.float32),
                   uv_faces=None if out_uv is None else torch.tensor(np.concatenate(uv_faces)))
    if not union:
        return stacked
    part_of_face = np.repeat(np.arange(len(meshes)), [m.num_faces for m in meshes])
    return union_parts(stacked, part_of_face)


def normalize_to_unit_box(mesh: Mesh, size: float = 1.0) -> Mesh:
    """Centre the bounding box at the origin and scale its longest side to ``size`` (in place of a copy).

    Example:
        >>> m = normalize_to_unit_box(box((4.0, 2.0, 2.0)))
        >>> float(m.vertices[:, 0].max())
        0.5
    """
    v = mesh.vertices.double()
    lo, hi = v.min(0).values, v.max(0).values
    v = (v - (lo + hi) / 2) * (size / float((hi - lo).max()))
    return Mesh(vertices=v.float(), faces=mesh.faces, uvs=mesh.uvs, uv_faces=mesh.uv_faces,
                vertex_colors=mesh.vertex_colors, material=mesh.material)
