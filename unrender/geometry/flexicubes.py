"""FlexiCubes: differentiable Dual Marching Cubes with learnable per-cube weights (Shen et al., SIGGRAPH 2023).

An alternative to :class:`~unrender.geometry.dmtet.DMTetGeometry` on a regular cube grid. Each grid vertex
carries an SDF value and a bounded offset; each cube carries 21 weights that give the extracted surface
extra freedom (sharp features, better-shaped faces) without changing its topology:

1. **Crossings.** On every sign-changing edge ``(a, b)`` of a cube, the crossing point is the zero of the
   SDF re-weighted by the cube's corner weights ``alpha > 0``::

       u = (s_b alpha_b x_a - s_a alpha_a x_b) / (s_b alpha_b - s_a alpha_a)

   (``alpha = 1`` is linear interpolation). Each cube computes its own crossings, with its own alphas.
2. **Dual vertices.** The crossed edges of a cube are grouped into patches by the Dual Marching Cubes table
   (:mod:`~unrender.geometry.flexicubes_tables`, up to 4 patches per cube); each patch has one dual vertex,
   the beta-weighted mean of its crossings ``v = sum beta_e u_e / sum beta_e``.
3. **Quads.** Every sign-changing grid edge with four cubes around it yields the quad of those cubes' dual
   vertices (for the patch that contains the edge), ordered so its normal points from negative to positive
   SDF. Quads are split into triangles either around their gamma-weighted centre (``"centroid"``, the
   paper's training mode: 4 triangles, differentiable in gamma)::

       m = (g02 (v0 + v2) / 2 + g13 (v1 + v3) / 2) / (g02 + g13),   g02 = gamma_0 gamma_2, g13 = gamma_1 gamma_3

   or along the diagonal with the larger gamma product (``"diagonal"``, the paper's inference mode; exact
   ties, as with the initial weights, take the shorter diagonal).

Weight parametrisation (the paper's): ``beta = 1 + 0.99 tanh(w)``, ``alpha = 1 + 0.99 tanh(w)``,
``gamma = 0.005 + 0.99 sigmoid(w)``; all weights start at 0 (``alpha = beta = 1``, ``gamma = 1/2``), where
the surface is plain dual marching cubes with mass-point dual vertices.

Conventions as in DMTet: the SDF is negative inside, ``0`` counts as outside; faces are counter-clockwise
seen from outside. A surface that reaches the boundary of the grid stays open there (edges on the grid
boundary have fewer than four cubes); a surface inside the grid is closed, and every mesh edge is shared by
exactly two faces (see the table module for how ambiguous faces are resolved). Vertices need not be
manifold: two patches of neighbouring cubes may touch at one dual vertex.

Example:
    >>> geo = FlexiCubesGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.5, resolution=8)
    >>> v, f = geo.extract()
    >>> bool(((v.norm(dim=-1) - 0.5).abs() < 0.1).all()), f.shape[1]
    (True, 3)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..checks import float_tensor
from ..errors import InputError
from ..mesh import Mesh
from .dmtet import SurfaceMesh, remove_small_components, sdf_sign_regularizer
from .flexicubes_tables import CORNER_OFFSETS, CUBE_EDGES, DUAL_MC

_WEIGHT_SCALE = 0.99
_QUAD_SPLITS = ("centroid", "diagonal")
# Around a grid edge along axis a at vertex p, the four cubes start at p - db e_b - dc e_c; this order
# walks them counter-clockwise seen from +a (b x c = a), so the quad's normal is +a.
_AROUND_EDGE = ((0, 0), (1, 0), (1, 1), (0, 1))


@dataclass
class CubeGrid:
    """A regular grid of ``resolution^3`` cubes over an axis-aligned box.

    Attributes:
        vertices: ``[(N+1)^3, 3]`` lattice points, index ``i (N+1)^2 + j (N+1) + k`` for ``(x, y, z) =
            lo + (i, j, k) * cell``.
        edges: ``[E,2]`` int64 grid edges ``(p, p + e_a)``, ``E = 3 N (N+1)^2``, grouped by axis a (row-major
            within a group), ``edges[:, 0] < edges[:, 1]``.
        cell: per-axis cube side ``(hi - lo) / N``.
        spacing: the smallest cube side (as :class:`~unrender.geometry.tet_grid.TetGrid`), the length unit
            of deformation bounds and tolerances.
        resolution: ``N``, cubes per axis. Cube ``(i, j, k)`` has index ``i N^2 + j N + k``.
    """

    vertices: torch.Tensor
    edges: torch.Tensor
    cell: tuple
    spacing: float
    resolution: int


def cube_grid(resolution: int, bounds=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), device=None,
              dtype: torch.dtype = torch.float32) -> CubeGrid:
    """Build the lattice of ``(resolution + 1)^3`` points and its grid edges over the box ``bounds``.

    Args:
        resolution: cubes per axis, >= 1.
        bounds: ``[2,3]`` box corners ``(lo, hi)`` with ``lo < hi`` on every axis.
        device, dtype: of ``vertices`` (``edges`` are int64 on ``device``).

    Example:
        >>> g = cube_grid(2, bounds=((0, 0, 0), (1, 1, 2)))
        >>> tuple(g.vertices.shape), tuple(g.edges.shape), g.spacing
        ((27, 3), (54, 2), 0.5)
    """
    try:
        n = operator.index(resolution)
    except TypeError:
        n = 0
    if n < 1 or isinstance(resolution, bool):
        raise InputError(f"resolution must be a positive int (cubes per axis); got {resolution!r}.")
    try:
        box = torch.as_tensor(bounds, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        box = torch.zeros(0)
    if box.shape != (2, 3) or not torch.isfinite(box).all() or not bool((box[1] > box[0]).all()):
        raise InputError(f"bounds must be [2,3] finite (lo, hi) corners with lo < hi per axis; got {bounds!r}.")
    cell = (box[1] - box[0]) / n
    ticks = torch.arange(n + 1, dtype=torch.float64)
    axes = [box[0, a] + ticks * cell[a] for a in range(3)]
    vertices = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ids = torch.arange((n + 1) ** 3, device=device).view(n + 1, n + 1, n + 1)
    strides = ((n + 1) ** 2, n + 1, 1)
    edges = torch.cat([torch.stack([ids.narrow(a, 0, n).reshape(-1), ids.narrow(a, 0, n).reshape(-1) + strides[a]],
                                   -1) for a in range(3)])
    return CubeGrid(vertices.to(device=device, dtype=dtype), edges, tuple(cell.tolist()), float(cell.min()), n)


@dataclass
class FlexiCubesExtraction:
    """Everything :meth:`FlexiCubesGeometry.extract_detailed` computes.

    Attributes:
        vertices: ``[M,3]`` mesh vertices: the ``num_dual`` dual vertices first, then (``"centroid"`` split)
            one centre per quad.
        faces: ``[K,3]`` int64, counter-clockwise seen from outside.
        num_dual: number of dual vertices.
        crossing_points: ``[P,3]`` crossing point of every (cube, crossed edge) pair.
        crossing_dual: ``[P]`` int64 the dual vertex each crossing point belongs to.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    num_dual: int
    crossing_points: torch.Tensor
    crossing_dual: torch.Tensor

    @property
    def mesh(self) -> SurfaceMesh:
        """``(vertices, faces)`` as a :class:`~unrender.geometry.dmtet.SurfaceMesh`."""
        return SurfaceMesh(self.vertices, self.faces)


def deviation_loss(dual_vertices: torch.Tensor, crossing_points: torch.Tensor,
                   crossing_dual: torch.Tensor) -> torch.Tensor:
    """FlexiCubes' "dev" regulariser: spread of the distances from each dual vertex to its crossings.

    With ``d_e = ||u_e - v_{d(e)}||`` and ``mean_d`` the mean of ``d_e`` over the crossings of dual vertex
    ``d``::

        L = mean_d ( mean_{e in d} (d_e - mean_d)^2 )

    the variance of the distances (the paper uses the mean absolute deviation; the variance is its smooth
    counterpart). It is zero when every dual vertex is equidistant from its crossings, which keeps dual
    vertices central in their patches and the faces well shaped. Units are squared lengths.

    Args:
        dual_vertices: ``[D,3]``.
        crossing_points: ``[P,3]``.
        crossing_dual: ``[P]`` int64 indices into ``dual_vertices``.

    Example:
        >>> v = torch.zeros(1, 3)
        >>> u = torch.tensor([[1.0, 0, 0], [0, 3.0, 0]])
        >>> deviation_loss(v, u, torch.tensor([0, 0])).item()  # distances 1 and 3: variance 1
        1.0
    """
    if crossing_points.shape[0] == 0:
        return dual_vertices.sum() * 0
    dist = (crossing_points - dual_vertices[crossing_dual]).norm(dim=-1)
    count = torch.bincount(crossing_dual, minlength=dual_vertices.shape[0]).to(dist.dtype)
    used = count > 0
    mean = torch.zeros_like(count).index_add_(0, crossing_dual, dist) / count.clamp(min=1)
    spread = torch.zeros_like(count).index_add_(0, crossing_dual, (dist - mean[crossing_dual]) ** 2)
    return (spread[used] / count[used]).mean()


class FlexiCubesGeometry(torch.nn.Module):
    """Cube grid with a learnable SDF, bounded deformation and FlexiCubes weights (module docstring).

    Parameters: ``sdf [V]``, ``deform [V,3]`` (``V = (N+1)^3``) and ``weights [C,21]`` (``C = N^3``; per cube
    12 edge betas in the edge order of ``CUBE_EDGES``, 8 corner alphas in the corner order of
    ``CORNER_OFFSETS`` (:mod:`~unrender.geometry.flexicubes_tables`), 1 gamma; pre-activation, zero at start).
    The deformed grid is ``v' = v + deform_scale * spacing * tanh(deform)``, as in DMTet.
    Grid tensors and tables are non-persistent buffers: ``.to(device)`` moves them and a state dict holds
    only the three parameters. Give ``weights`` its own optimiser group (a learning rate around 1e-2 to
    1e-3, unitless).

    Args:
        grid: the undeformed :class:`CubeGrid`.
        sdf: initial SDF ``[V]``.
        deform_scale: bound on each vertex offset, in units of ``grid.spacing``.
        quad_split: ``"centroid"`` (default; 4 triangles per quad, gradients reach gamma) or ``"diagonal"``.

    Example:
        >>> geo = FlexiCubesGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.5, resolution=8)
        >>> m = geo.mesh()
        >>> m.num_faces > 0, tuple(geo.weights.shape)
        (True, (512, 21))
    """

    def __init__(self, grid: CubeGrid, sdf: torch.Tensor, deform_scale: float = 0.25,
                 quad_split: str = "centroid"):
        super().__init__()
        sdf = float_tensor("sdf", sdf, "[V]", ndims=(1,), dtype=grid.vertices.dtype)
        if sdf.shape[0] != grid.vertices.shape[0]:
            raise InputError(f"sdf must have one value per grid vertex ([{grid.vertices.shape[0]}]); "
                             f"got {tuple(sdf.shape)}.")
        if not deform_scale >= 0:
            raise InputError(f"deform_scale must be >= 0 (cube cells); got {deform_scale!r}.")
        _check_split(quad_split)
        device, n = grid.vertices.device, grid.resolution
        self.register_buffer("grid_vertices", grid.vertices, persistent=False)
        self.register_buffer("edges", grid.edges, persistent=False)
        self.register_buffer("patch_table", torch.tensor(DUAL_MC.patch_of_edge, device=device), persistent=False)
        self.register_buffer("count_table", torch.tensor(DUAL_MC.num_patches, device=device), persistent=False)
        self.register_buffer("merged_table", torch.tensor(DUAL_MC.merged_face, device=device), persistent=False)
        strides = ((n + 1) ** 2, n + 1, 1)
        corner_shift = [sum(o * s for o, s in zip(off, strides)) for off in CORNER_OFFSETS]
        self.register_buffer("corner_shift", torch.tensor(corner_shift, device=device), persistent=False)
        self.register_buffer("edge_corners", torch.tensor(CUBE_EDGES, device=device), persistent=False)
        self.sdf = torch.nn.Parameter(sdf.detach().clone().to(device))
        self.deform = torch.nn.Parameter(torch.zeros_like(grid.vertices))
        self.weights = torch.nn.Parameter(torch.zeros(n ** 3, 21, dtype=grid.vertices.dtype, device=device))
        self.spacing, self.resolution, self.cell = grid.spacing, n, grid.cell
        self.deform_scale, self.quad_split = float(deform_scale), quad_split

    @classmethod
    def from_sdf_function(cls, sdf_fn: Callable[[torch.Tensor], torch.Tensor], resolution: int,
                          bounds=((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), deform_scale: float = 0.25, device=None,
                          dtype: torch.dtype = torch.float32, quad_split: str = "centroid") -> FlexiCubesGeometry:
        """Build the grid with :func:`cube_grid` and initialise ``sdf = sdf_fn(grid.vertices)``.

        Args:
            sdf_fn: maps points ``[V,3]`` to signed distances ``[V]`` (negative inside).
            resolution, bounds: as in :func:`cube_grid` (``resolution`` counts cubes per axis).
            deform_scale: bound on each vertex offset, in cube cells.
            quad_split: ``"centroid"`` or ``"diagonal"`` (class docstring).

        Example:
            >>> geo = FlexiCubesGeometry.from_sdf_function(lambda p: p[:, 0] - 0.2, 4)
            >>> geo.sdf.shape
            torch.Size([125])
        """
        grid = cube_grid(resolution, bounds, device=device, dtype=dtype)
        with torch.no_grad():
            sdf = sdf_fn(grid.vertices)
        if not isinstance(sdf, torch.Tensor) or sdf.shape != (grid.vertices.shape[0],):
            raise InputError(f"sdf_fn must map points [V,3] to a tensor [V]; for {grid.vertices.shape[0]} points "
                             f"it returned {getattr(sdf, 'shape', type(sdf).__name__)}.")
        return cls(grid, sdf, deform_scale=deform_scale, quad_split=quad_split)

    @property
    def grid(self) -> CubeGrid:
        """The undeformed :class:`CubeGrid` (views of this module's buffers)."""
        return CubeGrid(self.grid_vertices, self.edges, self.cell, self.spacing, self.resolution)

    def deformed_vertices(self) -> torch.Tensor:
        """Grid positions ``[V,3]`` after the bounded offset ``deform_scale * spacing * tanh(deform)``."""
        return self.grid_vertices + (self.deform_scale * self.spacing) * torch.tanh(self.deform)

    def extract(self, quad_split: str | None = None) -> SurfaceMesh:
        """The surface as differentiable ``(vertices [M,3], faces [K,3])`` (module docstring, steps 1-3).

        ``quad_split`` overrides the module's ``"centroid"`` / ``"diagonal"`` choice for this call.
        """
        return self.extract_detailed(quad_split).mesh

    def forward(self) -> SurfaceMesh:
        """Same as :meth:`extract` (so ``geometry()`` and ``torch.func.functional_call`` work)."""
        return self.extract()

    def mesh(self, min_component_fraction: float = 0.0, quad_split: str | None = None) -> Mesh:
        """The extracted surface as a :class:`~unrender.mesh.Mesh` (gradients flow to all parameters).

        ``min_component_fraction > 0`` drops floaters (and unused vertices) with
        :func:`~unrender.geometry.dmtet.remove_small_components`.
        """
        vertices, faces = self.extract(quad_split)
        if min_component_fraction > 0:
            vertices, faces = remove_small_components(vertices, faces, min_component_fraction)
        return Mesh(vertices=vertices, faces=faces)

    def sdf_regularizer(self) -> torch.Tensor:
        """:func:`~unrender.geometry.dmtet.sdf_sign_regularizer` of the SDF over the grid edges (a scalar)."""
        return sdf_sign_regularizer(self.sdf, self.edges)

    def deviation_loss(self, extraction: FlexiCubesExtraction | None = None) -> torch.Tensor:
        """:func:`deviation_loss` of an extraction (pass the one from :meth:`extract_detailed` to avoid
        extracting twice); a scalar, ``0`` for an empty surface.

        Example:
            >>> geo = FlexiCubesGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.5, 8)
            >>> out = geo.extract_detailed()
            >>> loss = ((out.vertices.norm(dim=-1) - 0.4) ** 2).mean() + 0.1 * geo.deviation_loss(out)
            >>> loss.backward(); bool(geo.weights.grad.abs().sum() > 0)
            True
        """
        if extraction is None:
            extraction = self.extract_detailed()
        return deviation_loss(extraction.vertices[:extraction.num_dual], extraction.crossing_points,
                              extraction.crossing_dual)

    def extract_detailed(self, quad_split: str | None = None) -> FlexiCubesExtraction:
        """:meth:`extract` plus the crossing points and their dual vertices (:class:`FlexiCubesExtraction`).

        Only cubes with a sign change are processed: the cube cases come from eight shifted views of the
        sign grid, everything else from gathers over the crossing cubes and edges.

        Example:
            >>> geo = FlexiCubesGeometry.from_sdf_function(lambda p: p.norm(dim=-1) - 0.5, 8, quad_split="diagonal")
            >>> out = geo.extract_detailed()
            >>> out.num_dual == out.vertices.shape[0], out.crossing_points.shape[0] == out.crossing_dual.shape[0]
            (True, True)
        """
        quad_split = _check_split(self.quad_split if quad_split is None else quad_split)
        if not bool(torch.isfinite(self.sdf).all()):
            raise InputError("FlexiCubesGeometry.sdf contains NaN or infinite values; lower the learning rate.")
        n, device = self.resolution, self.sdf.device
        vertices = self.deformed_vertices()
        inside = (self.sdf < 0).view(n + 1, n + 1, n + 1)
        case = torch.zeros(n, n, n, dtype=torch.uint8, device=device)
        for k, (dx, dy, dz) in enumerate(CORNER_OFFSETS):
            case |= inside[dx:dx + n, dy:dy + n, dz:dz + n].to(torch.uint8) << k
        case = case.view(-1).long()
        cubes = ((case != 0) & (case != 255)).nonzero().view(-1)  # [Cc] crossing cube ids
        if cubes.numel() == 0:
            empty = vertices.new_zeros(0, 3)
            none = torch.zeros(0, dtype=torch.int64, device=device)
            return FlexiCubesExtraction(empty, none.view(0, 3), 0, empty, none)
        cube_case = case[cubes]
        convention = self._conventions(case, cubes, cube_case)
        patch = self.patch_table[convention, cube_case]                      # [Cc,12]
        count = self.count_table[convention, cube_case]                      # [Cc]
        first_dual = torch.cumsum(count, 0) - count
        num_dual = int(count.sum())

        w = self.weights[cubes]
        beta = 1 + _WEIGHT_SCALE * torch.tanh(w[:, :12])
        alpha = 1 + _WEIGHT_SCALE * torch.tanh(w[:, 12:20])
        gamma = (1 - _WEIGHT_SCALE) / 2 + _WEIGHT_SCALE * torch.sigmoid(w[:, 20])

        # Crossings, one per (crossing cube, crossed local edge).
        row, local = (patch >= 0).nonzero(as_tuple=True)
        crossing_dual = first_dual[row] + patch[row, local]
        base = _cube_base(cubes, n)[row]
        corner_a, corner_b = self.edge_corners[local, 0], self.edge_corners[local, 1]
        ia, ib = base + self.corner_shift[corner_a], base + self.corner_shift[corner_b]
        sa = (self.sdf[ia] * alpha[row, corner_a]).unsqueeze(-1)
        sb = (self.sdf[ib] * alpha[row, corner_b]).unsqueeze(-1)
        # sa and sb have opposite signs (one < 0, the other >= 0), so sb - sa never vanishes.
        crossing = (sb * vertices[ia] - sa * vertices[ib]) / (sb - sa)
        b = beta[row, local].unsqueeze(-1)
        dual = vertices.new_zeros(num_dual, 3).index_add(0, crossing_dual, b * crossing)
        dual = dual / vertices.new_zeros(num_dual, 1).index_add(0, crossing_dual, b)

        row_of_cube = torch.full((n ** 3,), -1, dtype=torch.int64, device=device)
        row_of_cube[cubes] = torch.arange(cubes.numel(), device=device)
        quad_rows, quad_locals = self._quads(inside)
        rows = row_of_cube[quad_rows]                                        # [Q,4], all >= 0
        quads = first_dual[rows] + patch[rows, quad_locals]
        out_vertices, faces = _triangulate(dual, quads, gamma[rows], quad_split)
        return FlexiCubesExtraction(out_vertices, faces, num_dual, crossing, crossing_dual)

    def _conventions(self, case: torch.Tensor, cubes: torch.Tensor, cube_case: torch.Tensor) -> torch.Tensor:
        """Table convention per crossing cube: 1 for the lower cube of each pair that both join all four
        crossed edges of their shared face (see :mod:`~unrender.geometry.flexicubes_tables`), else 0."""
        n = self.resolution
        merged = self.merged_table[cube_case]                              # [Cc] face 2a+s or -1
        convention = torch.zeros_like(cube_case)
        candidates = ((merged >= 0) & (merged % 2 == 1)).nonzero().view(-1)   # merged on a high face
        if candidates.numel() == 0:
            return convention
        axis = merged[candidates] // 2
        cube = cubes[candidates]
        stride = torch.tensor([n * n, n, 1], device=case.device)[axis]
        coord = (cube // stride) % n
        has_neighbour = coord < n - 1
        neighbour = torch.where(has_neighbour, cube + stride, cube)
        both = has_neighbour & (self.merged_table[case[neighbour]] == 2 * axis)
        convention[candidates[both]] = 1
        return convention

    def _quads(self, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cube ids ``[Q,4]`` and local edge ids ``[Q,4]`` of the quad of every crossed interior grid edge.

        The four cubes go counter-clockwise around the edge's axis, reversed where the edge's lower end is
        outside, so every quad faces from inside to outside.
        """
        n, device = self.resolution, inside.device
        cube_ids, local_ids = [], []
        cube_strides = torch.tensor([n * n, n, 1], device=device)
        for a in range(3):
            b, c = (a + 1) % 3, (a + 2) % 3
            lower, upper = inside.narrow(a, 0, n), inside.narrow(a, 1, n)
            crossed = lower != upper
            # Interior along b and c: the edge needs all four cubes around it.
            interior = crossed.narrow(b, 1, n - 1).narrow(c, 1, n - 1)
            p = interior.nonzero()                                         # [Q_a,3] in the narrowed frame
            lower_inside = lower.narrow(b, 1, n - 1).narrow(c, 1, n - 1)[interior]
            p[:, b] += 1
            p[:, c] += 1
            corners = []
            for db, dc in _AROUND_EDGE:
                q = p.clone()
                q[:, b] -= db
                q[:, c] -= dc
                corners.append((q * cube_strides).sum(-1))  # no int matmul on CUDA
            cube = torch.stack(corners, -1)                                # [Q_a,4]
            local = torch.tensor([4 * a + db + 2 * dc for db, dc in _AROUND_EDGE], device=device).expand_as(cube)
            flip = ~lower_inside
            cube = torch.where(flip.unsqueeze(-1), cube.flip(-1), cube)
            local = torch.where(flip.unsqueeze(-1), local.flip(-1), local)
            cube_ids.append(cube)
            local_ids.append(local)
        return torch.cat(cube_ids), torch.cat(local_ids)


def _check_split(quad_split: str) -> str:
    if quad_split not in _QUAD_SPLITS:
        raise InputError(f"quad_split must be one of {_QUAD_SPLITS}; got {quad_split!r}.")
    return quad_split


def _cube_base(cubes: torch.Tensor, n: int) -> torch.Tensor:
    """Grid vertex id of the lowest corner of each cube id ``i N^2 + j N + k`` -> ``i (N+1)^2 + j (N+1) + k``."""
    i, rest = cubes // (n * n), cubes % (n * n)
    j, k = rest // n, rest % n
    return (i * (n + 1) + j) * (n + 1) + k


def _triangulate(dual: torch.Tensor, quads: torch.Tensor, gamma: torch.Tensor,
                 quad_split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split quads ``[Q,4]`` (counter-clockwise) into triangles; ``gamma [Q,4]`` per quad corner."""
    g02 = gamma[:, 0] * gamma[:, 2]
    g13 = gamma[:, 1] * gamma[:, 3]
    if quad_split == "centroid":
        v = dual[quads]                                                    # [Q,4,3]
        w02, w13 = g02.unsqueeze(-1), g13.unsqueeze(-1)
        centre = (w02 * (v[:, 0] + v[:, 2]) + w13 * (v[:, 1] + v[:, 3])) / (2 * (w02 + w13))
        centre_ids = dual.shape[0] + torch.arange(quads.shape[0], device=quads.device)
        nxt = quads.roll(-1, dims=1)
        faces = torch.stack([quads, nxt, centre_ids.unsqueeze(-1).expand_as(quads)], -1).reshape(-1, 3)
        return torch.cat([dual, centre]), faces
    with torch.no_grad():
        v = dual[quads]
        shorter_02 = (v[:, 0] - v[:, 2]).norm(dim=-1) <= (v[:, 1] - v[:, 3]).norm(dim=-1)
        split_02 = (g02 > g13) | ((g02 == g13) & shorter_02)
    along_02 = quads[:, [0, 1, 2, 0, 2, 3]]
    along_13 = quads[:, [1, 2, 3, 1, 3, 0]]
    faces = torch.where(split_02.unsqueeze(-1), along_02, along_13).reshape(-1, 3)
    return dual, faces
