"""Analytic antialiasing of silhouette edges (Laine et al. 2020, "Modular primitives ...", Sec. 3.3).

The raster from :func:`unrender.render.rasterize` is piecewise constant in the vertex positions: the
triangle id of a pixel jumps when an edge crosses its centre, so shading alone carries no gradient for
where the silhouette lies. :func:`antialias` restores that gradient (and smooths the staircase) by
blending colours across silhouette edges by the fraction of the pixel they would cover.

Scheme, for every pair of horizontally or vertically adjacent pixels ``(P, Q)`` whose triangle ids
differ:

1. The *front* pixel ``F`` is the one whose surface is nearer (smaller ``z/w``; background is infinitely
   far), ``O`` is the other one and ``T`` the triangle drawn at ``F``.
2. The segment from ``F``'s centre to ``O``'s centre leaves ``T`` through the edge ``e`` that it crosses
   first: with the homogeneous edge functions ``D_i(p) = (V_j x V_k) . (p_x, p_y, 1)`` (``V = (x, y, w)``
   clip coordinates, signed so that ``D_i >= 0`` inside ``T``), among the edges with ``D_i(O) < 0`` the one
   with the smallest ``alpha_i = D_i(F) / (D_i(F) - D_i(O))``. ``alpha`` in ``[0, 1]`` is where the edge
   crosses the segment, as a fraction of the pixel spacing from ``F``'s centre. If ``e`` is not a
   silhouette the segment is followed into the neighbouring triangle across ``e`` (up to ``_MAX_WALK``
   triangles; it stops without a blend when it reaches the triangle drawn at ``O`` or one containing
   ``O``'s centre), so that on meshes with
   sub-pixel triangles the silhouette is still found; ``T`` and ``e`` are then the last triangle and
   the edge it is left through.
3. Only if ``e`` is a *silhouette* edge (see :func:`silhouette_edges`) and runs mostly across the
   pair's direction (an edge at most 45 degrees from vertical in pixel units is handled by horizontal
   pairs, any other by vertical pairs, so no edge is counted twice) the pair is blended. Treating each
   pixel as a unit box along the segment, ``T`` covers ``[0, alpha]`` of it, so

       alpha > 1/2:  out[O] += (alpha - 1/2) (color[F] - color[O])
       alpha < 1/2:  out[F] += (1/2 - alpha) (color[O] - color[F])

   Blends from all four neighbours add up; they all read the input colours. For a straight edge that is
   crossed only by horizontal pairs (or only by vertical ones) the blended coverage of every row
   (column) equals the exact covered length, and its derivative w.r.t. the vertex positions, which
   flows through ``alpha`` by ordinary autograd, is the visibility gradient.

Pixel ``(row, col)`` has its centre at ndc ``(2 (col + 0.5) / W - 1, 2 (row + 0.5) / H - 1)`` (row 0 is the
bottom, as in ``rast``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import float_tensor, index_tensor, same_device
from ..errors import InputError
from .kernel_config import resolve_backend

try:  # numba is a dependency; the pure-torch search keeps working where it is broken
    from . import antialias_cpu
except Exception:  # noqa: BLE001
    antialias_cpu = None

# Longest walk (in triangles) from the front triangle to a silhouette edge along one pixel segment.
_MAX_WALK = 8


@dataclass(frozen=True)
class EdgeTopology:
    """Edge adjacency of a triangle list; depends on ``tri`` only, so build it once per mesh.

    Face ``f``'s edge ``i`` joins ``tri[f, (i + 1) % 3]`` and ``tri[f, (i + 2) % 3]`` (it is opposite vertex ``i``).

    Attributes:
        num_faces: F, the number of triangles it was built from.
        edges: ``[E,2]`` int64 vertex ids of every unique edge (smaller id first).
        edge_faces: ``[E,2]`` int64 the (first) two faces sharing the edge; ``-1`` in column 1 for a
            boundary edge.
        edge_opposite: ``[E,2]`` int64 the vertex of each of those faces that is not on the edge (``-1``).
        nonmanifold: ``[E]`` bool, edges shared by more than two faces (always treated as silhouettes).
        face_edges: ``[F,3]`` int64 edge index of each face's edge ``i``.
    """

    num_faces: int
    edges: torch.Tensor
    edge_faces: torch.Tensor
    edge_opposite: torch.Tensor
    nonmanifold: torch.Tensor
    face_edges: torch.Tensor

    def to(self, device) -> "EdgeTopology":
        """The same topology with every tensor on ``device``."""
        return EdgeTopology(self.num_faces, *(t.to(device) for t in (self.edges, self.edge_faces,
                                                                      self.edge_opposite, self.nonmanifold,
                                                                      self.face_edges)))


def build_topology(tri) -> EdgeTopology:
    """Unique edges of ``tri[F,3]`` and the faces on either side of each (see :class:`EdgeTopology`).

    Edge ``{a, b}`` of face ``f`` is keyed by ``min(a, b) * (V + 1) + max(a, b)``; one sort groups equal keys.
    Pass the result to :func:`antialias` as ``topology=`` to skip rebuilding it every call.

    Example:
        >>> topo = build_topology(torch.tensor([[0, 1, 2], [2, 1, 3]]))
        >>> topo.edges.shape[0], int((topo.edge_faces[:, 1] >= 0).sum())   # 5 edges, one shared
        (5, 1)
    """
    tri = index_tensor("tri", tri, "[F,3]", last_dim=3)
    dev, nf = tri.device, tri.shape[0]
    if nf == 0:
        z = torch.zeros(0, 2, dtype=torch.int64, device=dev)
        return EdgeTopology(0, z, z.clone(), z.clone(), torch.zeros(0, dtype=torch.bool, device=dev),
                            torch.zeros(0, 3, dtype=torch.int64, device=dev))
    if int(tri.min()) < 0:
        raise InputError("tri must hold non-negative vertex indices.")
    nv = int(tri.max()) + 1
    a, b = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]  # edge i = (tri[(i+1)%3], tri[(i+2)%3])
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    key = lo * (nv + 1) + hi
    uniq, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    ne = uniq.numel()
    edges = torch.stack([uniq // (nv + 1), uniq % (nv + 1)], -1)
    # Rank of every (face, edge) slot within its edge group gives column 0 / 1 of edge_faces.
    order = torch.argsort(inverse, stable=True)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=dev) - first[inverse[order]]
    slot_face = torch.arange(3 * nf, device=dev) // 3
    slot_opp = tri.reshape(-1)  # vertex i is opposite edge i
    edge_faces = torch.full((ne, 2), -1, dtype=torch.int64, device=dev)
    edge_opp = torch.full((ne, 2), -1, dtype=torch.int64, device=dev)
    keep = rank < 2
    edge_faces[inverse[keep], rank[keep]] = slot_face[keep]
    edge_opp[inverse[keep], rank[keep]] = slot_opp[keep]
    return EdgeTopology(nf, edges, edge_faces, edge_opp, counts > 2, inverse.reshape(nf, 3))


def silhouette_edges(pos, topology: EdgeTopology) -> torch.Tensor:
    """``[B,E]`` bool: which edges are silhouettes in clip positions ``pos[B,V,4]``.

    An edge is a silhouette if it has one face (boundary), more than two (non-manifold), or its two faces
    lie on the same side of it on screen: with ``n = A x B`` for the edge's endpoints ``A, B`` (clip
    ``(x, y, w)``) and the faces' opposite vertices ``C_1, C_2``, ``(n . C_1) (n . C_2) >= 0``. For consistently
    wound meshes this is "their projected areas have opposite signs" (one faces the camera, one away), but
    it does not depend on the winding. Coplanar neighbours are never silhouettes.

    Example:
        >>> pos = torch.tensor([[-1., -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1], [1, 1, 0, 1]])
        >>> silhouette_edges(pos, build_topology(torch.tensor([[0, 1, 2], [2, 1, 3]]))).sum().item()
        4
    """
    with torch.no_grad():
        pos = float_tensor("pos", pos, "[B,V,4] or [V,4]", last_dim=4, ndims=(2, 3))
        pos = pos[None] if pos.dim() == 2 else pos
        xyw = pos[..., [0, 1, 3]]
        n = torch.linalg.cross(xyw[:, topology.edges[:, 0]], xyw[:, topology.edges[:, 1]], dim=-1)
        opp = topology.edge_opposite.clamp(min=0)
        s1 = (n * xyw[:, opp[:, 0]]).sum(-1)
        s2 = (n * xyw[:, opp[:, 1]]).sum(-1)
        boundary = (topology.edge_faces[:, 1] < 0) | topology.nonmanifold
        return boundary[None] | (s1 * s2 >= 0)


def _pixel_pairs(tid: torch.Tensor, depth: torch.Tensor):
    """Flat indices ``(front, other)`` and direction (0 = along columns, 1 = along rows) of every adjacent
    pixel pair whose triangle ids differ, with the nearer pixel first."""
    b, h, w = tid.shape
    base = torch.arange(b * h * w, device=tid.device).reshape(b, h, w)
    out_f, out_o, out_d = [], [], []
    for axis, (p_sl, q_sl) in enumerate((((slice(None), slice(None), slice(0, -1)),
                                          (slice(None), slice(None), slice(1, None))),
                                         ((slice(None), slice(0, -1), slice(None)),
                                          (slice(None), slice(1, None), slice(None))))):
        diff = tid[p_sl] != tid[q_sl]
        p = base[p_sl][diff]
        q = base[q_sl][diff]
        p_front = depth.reshape(-1)[p] <= depth.reshape(-1)[q]
        out_f.append(torch.where(p_front, p, q))
        out_o.append(torch.where(p_front, q, p))
        out_d.append(torch.full_like(p, axis))
    return torch.cat(out_f), torch.cat(out_o), torch.cat(out_d)


def _centres(idx: torch.Tensor, h: int, w: int, dtype):
    """Ndc ``(x, y)`` of the centres of flat pixel indices."""
    rem = idx % (h * w)
    x = ((rem % w).to(dtype) + 0.5) * (2.0 / w) - 1.0
    y = ((rem // w).to(dtype) + 0.5) * (2.0 / h) - 1.0
    return x, y


def _exit_edges(xyw, tri, pbi, face, fx, fy, ox, oy, entry):
    """For the segment F -> O through triangle ``face``: the local index of the edge it leaves through
    (smallest crossing ``t = D(F) / (D(F) - D(O))`` among edges with ``D(O) < 0``, the entry edge excluded)
    and whether there is one (there is none when O lies inside the triangle)."""
    v = xyw[pbi[:, None], tri[face]]  # [N,3,3]
    c = torch.linalg.cross(v[:, [1, 2, 0]], v[:, [2, 0, 1]], dim=-1)
    det = (v[:, 0] * c[:, 0]).sum(-1, keepdim=True)
    sgn = torch.where(det >= 0, 1.0, -1.0).to(det.dtype)
    df = (c[..., 0] * fx[:, None] + c[..., 1] * fy[:, None] + c[..., 2]) * sgn
    do = (c[..., 0] * ox[:, None] + c[..., 1] * oy[:, None] + c[..., 2]) * sgn
    leaves = (do < 0) & (df > do)
    leaves &= torch.arange(3, device=face.device) != entry[:, None]
    t = torch.where(leaves, df / torch.where(leaves, df - do, torch.ones_like(do)), torch.full_like(do, 2.0))
    edge = t.argmin(-1)
    ce = c.gather(1, edge[:, None, None].expand(-1, 1, 3))[:, 0]
    return edge, leaves.any(-1), ce


def _find_crossings_torch(pos, tri, tid, depth, topology, sil, max_walk: int = _MAX_WALK):
    """Pure-torch discontinuity search. Returns ``(front, other, face, local_edge)`` (int64 ``[N]``) of the
    pixel pairs to blend: the segment from the front centre to the other centre, followed across
    non-silhouette edges, leaves the surface through silhouette edge ``local_edge`` of triangle ``face``."""
    nb, h, w = tid.shape
    face_sil = sil[:, topology.face_edges]  # [Bp,F,3]
    front, other, axis = _pixel_pairs(tid, depth)
    pbi = front // (h * w) if pos.shape[0] > 1 else torch.zeros_like(front)
    face = tid.reshape(-1)[front] - 1
    face_o = tid.reshape(-1)[other] - 1
    entry = torch.full_like(face, -1)
    xyw = pos[..., [0, 1, 3]]
    fx, fy = _centres(front, h, w, pos.dtype)
    ox, oy = _centres(other, h, w, pos.dtype)
    done_f, done_o, done_t, done_e = [], [], [], []
    live = torch.arange(front.numel(), device=front.device)
    for _ in range(max_walk):
        if live.numel() == 0:
            break
        edge, found, ce = _exit_edges(xyw, tri, pbi[live], face[live], fx[live], fy[live], ox[live], oy[live],
                                      entry[live])
        is_sil = found & face_sil[pbi[live], face[live], edge]
        vertical = ce[:, 0].abs() * h >= ce[:, 1].abs() * w
        hit = is_sil & (vertical == (axis[live] == 0))
        done_f.append(front[live[hit]])
        done_o.append(other[live[hit]])
        done_t.append(face[live[hit]])
        done_e.append(edge[hit])
        # Cross the non-silhouette edge into the neighbouring face and go on from there.
        go = found & ~is_sil
        live, edge = live[go], edge[go]
        g = topology.face_edges[face[live], edge]
        pair = topology.edge_faces[g]
        nxt = torch.where(pair[:, 0] == face[live], pair[:, 1], pair[:, 0])
        face[live] = nxt
        entry[live] = (topology.face_edges[nxt] == g[:, None]).to(torch.int64).argmax(-1)
        live = live[nxt != face_o[live]]  # reached the triangle drawn at O: O is inside it, no silhouette
    return torch.cat(done_f), torch.cat(done_o), torch.cat(done_t), torch.cat(done_e)


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies the gradient by ``scale`` (``pos_gradient_boost``)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


def antialias(color, rast, pos, tri, topology: EdgeTopology | None = None, pos_gradient_boost: float = 1.0,
              backend: str = "auto") -> torch.Tensor:
    """Blend colours across silhouette edges by their analytic pixel coverage (see the module docstring).

    ``out = color + sum over blended pairs of |alpha - 1/2| (color[src] - color[dst])`` where ``alpha`` is the
    fraction of the pixel spacing at which a silhouette edge of the front triangle crosses the segment
    between two adjacent pixel centres, ``dst`` the pixel on the side the edge lies and ``src`` the other.

    Args:
        color: ``[B,H,W,C]`` shaded image (row 0 = ndc y = -1, as ``rast``).
        rast: ``[B,H,W,4]`` from :func:`unrender.render.rasterize` with the same ``pos`` and ``tri``.
        pos: clip-space positions ``[B,V,4]`` or ``[V,4]`` (shared by the batch).
        tri: ``[F,3]`` triangles.
        topology: :func:`build_topology` of ``tri``, reused across calls; built on the fly when ``None``.
        pos_gradient_boost: multiplies the gradient that flows to ``pos`` (the forward is unchanged).
        backend: discontinuity search, ``"auto"`` (numba on CPU, else torch) | ``"numba"`` | ``"torch"``;
            the result is the same.
    Returns:
        ``[B,H,W,C]``, differentiable w.r.t. ``color`` and, through the edge crossings, ``pos``.

    Example:
        >>> from unrender.render.rasterize import rasterize
        >>> xy = torch.tensor([[-0.55, -0.8], [0.45, -0.8], [-0.55, 0.8], [0.45, 0.8]])
        >>> pos = torch.cat([xy, torch.tensor([[0., 1]]).expand(4, 2)], 1).requires_grad_()
        >>> tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
        >>> rast = rasterize(pos, tri, (8, 8))           # 4 x 6.4 pixels, pixel centres only see 4 x 6
        >>> mask = antialias((rast[..., 3:] > 0).float(), rast, pos, tri)
        >>> round(mask.sum().item(), 3)                  # the exact area in pixels
        25.6
        >>> mask.sum().backward()
        >>> round(pos.grad[[1, 3], 0].sum().item(), 3)   # moving the right edge: 6 rows * 4 pixels per ndc unit
        24.0
    """
    rast = float_tensor("rast", rast, "[B,H,W,4]", last_dim=4, ndims=(4,))
    color = float_tensor("color", color, "[B,H,W,C]", ndims=(4,))
    pos = float_tensor("pos", pos, "[B,V,4] or [V,4]", last_dim=4, ndims=(2, 3))
    pos = pos[None] if pos.dim() == 2 else pos
    tri = index_tensor("tri", tri, "[F,3]", last_dim=3, num_vertices=pos.shape[1], device=pos.device)
    same_device(("color", color), ("rast", rast), ("pos", pos), ("tri", tri))
    nb, h, w = rast.shape[:3]
    if color.shape[:3] != rast.shape[:3]:
        raise InputError(f"color {tuple(color.shape)} and rast {tuple(rast.shape)} must share [B,H,W].")
    if pos.shape[0] not in (1, nb):
        raise InputError(f"pos has batch {pos.shape[0]} but rast has batch {nb}; use batch 1 or {nb}.")
    if backend not in ("auto", "numba", "torch"):
        raise InputError(f"backend must be 'auto', 'numba' or 'torch'; got {backend!r}.")
    if topology is None:
        topology = build_topology(tri)
    elif not isinstance(topology, EdgeTopology) or topology.num_faces != tri.shape[0]:
        raise InputError("topology must be build_topology(tri) of these same triangles; rebuild it for this mesh.")
    if topology.edges.device != pos.device:
        topology = topology.to(pos.device)
    if tri.shape[0] == 0:
        return color
    backend = resolve_backend(backend, antialias_cpu is not None, pos.device.type)

    with torch.no_grad():
        if backend == "numba":
            found = antialias_cpu.find_crossings(pos.detach().numpy(), tri.numpy(), rast.detach().numpy(),
                                                 topology.face_edges.numpy(), topology.edges.numpy(),
                                                 topology.edge_faces.numpy(), topology.edge_opposite.numpy(),
                                                 ((topology.edge_faces[:, 1] < 0) | topology.nonmanifold).numpy(),
                                                 _MAX_WALK)
            front, other, face, edge = (torch.from_numpy(a) for a in found)
        else:
            tid = rast[..., 3].detach().to(torch.int64)
            depth = torch.where(tid > 0, rast[..., 2].detach(), torch.full_like(rast[..., 2], float("inf")))
            sil = silhouette_edges(pos.detach().double(), topology)
            front, other, face, edge = _find_crossings_torch(pos.detach().double(), tri, tid, depth, topology, sil)
    if front.numel() == 0:
        return color

    # Differentiable crossing point of the chosen edge: alpha = D(F) / (D(F) - D(O)).
    pbi = front // (h * w) if pos.shape[0] > 1 else torch.zeros_like(front)
    j = tri[face, (edge + 1) % 3]
    k = tri[face, (edge + 2) % 3]
    p = pos if pos_gradient_boost == 1.0 else _ScaleGrad.apply(pos, float(pos_gradient_boost))
    xyw = p[..., [0, 1, 3]]
    c = torch.linalg.cross(xyw[pbi, j], xyw[pbi, k], dim=-1)
    fx, fy = _centres(front, h, w, pos.dtype)
    ox, oy = _centres(other, h, w, pos.dtype)
    df = c[:, 0] * fx + c[:, 1] * fy + c[:, 2]
    do = c[:, 0] * ox + c[:, 1] * oy + c[:, 2]
    alpha = (df / (df - do)).clamp(0.0, 1.0)
    far = alpha.detach() > 0.5
    dst = torch.where(far, other, front)
    src = torch.where(far, front, other)
    weight = (alpha - 0.5).abs().to(color.dtype)
    flat = color.reshape(-1, color.shape[-1])
    out = flat.index_add(0, dst, weight[:, None] * (flat[src] - flat[dst]))
    return out.reshape(color.shape)
