"""Mesh reconstruction metrics: Chamfer distance, F-score, normal consistency, volume IoU.

Definitions follow Occupancy Networks (Mescheder et al. 2019) and DVR (Niemeyer et al. 2020).
For point sets ``X`` (prediction) and ``Y`` (ground truth) sampled on the two surfaces, with
``d(x, Y) = min_y |x - y|`` (Euclidean):

* accuracy ``acc = mean_x d(x, Y)``, completeness ``comp = mean_y d(y, X)``;
* Chamfer-L1 ``= (acc + comp) / 2``; Chamfer-L2 ``= (mean_x d(x, Y)^2 + mean_y d(y, X)^2) / 2``;
* at a threshold ``tau``: precision ``P = |{x : d(x, Y) < tau}| / |X|``, recall
  ``R = |{y : d(y, X) < tau}| / |Y|``, F-score ``F = 2 P R / (P + R)`` (0 when ``P + R = 0``);
* normal consistency ``NC = (mean_x |n_x . n_{Y}(nn(x))| + mean_y |n_y . n_{X}(nn(y))|) / 2``,
  unsigned because a surface's orientation is not what is measured;
* volume IoU ``= |A and B| / |A or B|`` estimated with uniform samples in the union of the two
  bounding boxes, occupancy by :func:`unrender.geometry.inside.inside_mesh`.

:func:`evaluate_meshes` computes all of them after scaling both meshes by one factor so that
the ground truth's bounding box has longest side 1, so thresholds are fractions of the object size.

Example:
    >>> from unrender.geometry.primitives import icosphere
    >>> m = evaluate_meshes(icosphere(3), icosphere(3), n_points=2000)
    >>> round(m.chamfer_l1, 6), m.f_score[0.01]
    (0.0, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..checks import float_tensor, index_tensor
from ..errors import InputError
from ..geometry.inside import inside_mesh
from ..mesh import Mesh


def _points(name: str, x) -> np.ndarray:
    return float_tensor(name, x, "[N,3]", last_dim=3, ndims=(2,)).detach().cpu().double().numpy()


def _mesh_arrays(name: str, mesh) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices[V,3] float64, faces[F,3] int64)`` of a :class:`Mesh` or a ``(vertices, faces)`` pair."""
    if isinstance(mesh, Mesh):
        v, f = mesh.vertices, mesh.faces
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        v, f = mesh
    else:
        raise InputError(f"{name} must be a Mesh or a (vertices, faces) pair; got {type(mesh).__name__}.")
    v = _points(f"{name}.vertices", v)
    f = index_tensor(f"{name}.faces", f, "[F,3]", last_dim=3, num_vertices=v.shape[0]).cpu().numpy()
    if f.shape[0] == 0:
        raise InputError(f"{name} has no faces; metrics need a triangle mesh with at least one face.")
    if not np.isfinite(v).all():
        raise InputError(f"{name} has NaN or infinite vertex positions; repair the mesh first.")
    return v, f


def sample_surface(vertices, faces, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniformly distributed by area on a triangle mesh, with their face normals.

    A triangle is chosen with probability ``area_t / sum(area)``; inside it the point is
    ``(1 - sqrt(r1)) a + sqrt(r1) (1 - r2) b + sqrt(r1) r2 c`` for uniform ``r1, r2`` (uniform in the
    triangle). The normal is the unit face normal ``(b - a) x (c - a)`` (counter-clockwise = front).
    Deterministic for a given ``seed`` (numpy PCG64).

    Args:
        vertices: ``[V,3]``; faces: ``[F,3]`` with at least one non-degenerate triangle.
        n: number of samples; seed: random seed.
    Returns:
        ``(points[n,3], normals[n,3])`` in the dtype of ``vertices`` (float32 unless float64).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> p, nrm = sample_surface(m.vertices, m.faces, 1000, seed=0)
        >>> bool((p.abs().max(1).values - 0.5).abs().max() < 1e-6)
        True
    """
    v, f = _mesh_arrays("mesh", (vertices, faces))
    dtype = torch.float64 if torch.as_tensor(vertices).dtype == torch.float64 else torch.float32
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    if not area.sum() > 0:
        raise InputError("the mesh has zero surface area; sample_surface needs non-degenerate triangles.")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(area)
    face = np.minimum(np.searchsorted(cdf, rng.random(int(n)) * cdf[-1], side="right"), len(f) - 1)
    r1, r2 = np.sqrt(rng.random(int(n))), rng.random(int(n))
    t = tri[face]
    pts = (1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1] + (r1 * r2)[:, None] * t[:, 2]
    nrm = cross[face] / area[face][:, None]
    return torch.from_numpy(pts).to(dtype), torch.from_numpy(nrm).to(dtype)


@dataclass
class NearestNeighbours:
    """Nearest-neighbour matches between two point sets, both directions (numpy arrays).

    Attributes:
        pred_to_gt: ``d(x, Y)`` for every predicted point ``[Np]``; pred_to_gt_index: the matches ``[Np]``.
        gt_to_pred: ``d(y, X)`` for every ground-truth point ``[Ng]``; gt_to_pred_index: ``[Ng]``.
    """

    pred_to_gt: np.ndarray
    pred_to_gt_index: np.ndarray
    gt_to_pred: np.ndarray
    gt_to_pred_index: np.ndarray


def nearest_neighbours(pred_points, gt_points) -> NearestNeighbours:
    """Match ``pred_points[Np,3]`` and ``gt_points[Ng,3]`` both ways with scipy ``cKDTree`` (exact, Euclidean).

    Example:
        >>> nn = nearest_neighbours(torch.zeros(1, 3), torch.tensor([[3.0, 4.0, 0.0]]))
        >>> float(nn.pred_to_gt[0])
        5.0
    """
    x, y = _points("pred_points", pred_points), _points("gt_points", gt_points)
    if len(x) == 0 or len(y) == 0:
        raise InputError("pred_points and gt_points must each hold at least one point.")
    d_xy, i_xy = cKDTree(y).query(x, k=1, workers=-1)
    d_yx, i_yx = cKDTree(x).query(y, k=1, workers=-1)
    return NearestNeighbours(d_xy, i_xy, d_yx, i_yx)


def chamfer_distance(pred_points, gt_points, kind: str = "l1", nn: NearestNeighbours | None = None) -> float:
    """Chamfer distance between ``pred_points[Np,3]`` and ``gt_points[Ng,3]``.

    ``kind="l1"``: ``(mean_x d(x, Y) + mean_y d(y, X)) / 2``; ``kind="l2"``: the same with squared
    distances. ``nn`` reuses a :func:`nearest_neighbours` result.

    Example:
        >>> chamfer_distance(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 2.0]]))
        2.0
    """
    nn = nn or nearest_neighbours(pred_points, gt_points)
    if kind == "l1":
        return float((nn.pred_to_gt.mean() + nn.gt_to_pred.mean()) / 2)
    if kind == "l2":
        return float(((nn.pred_to_gt ** 2).mean() + (nn.gt_to_pred ** 2).mean()) / 2)
    raise InputError(f"kind must be 'l1' or 'l2'; got {kind!r}.")


def precision_recall(pred_points, gt_points, threshold: float,
                     nn: NearestNeighbours | None = None) -> tuple[float, float]:
    """``(precision, recall)`` at ``threshold``: fractions of points with ``d(x, Y) < tau`` resp. ``d(y, X) < tau``.

    Example:
        >>> precision_recall(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 2.0]]), 1.0)
        (1.0, 0.5)
    """
    nn = nn or nearest_neighbours(pred_points, gt_points)
    return float((nn.pred_to_gt < threshold).mean()), float((nn.gt_to_pred < threshold).mean())


def f_score(pred_points, gt_points, threshold: float, nn: NearestNeighbours | None = None) -> float:
    """F-score ``2 P R / (P + R)`` at ``threshold`` (0 when ``P + R = 0``); see :func:`precision_recall`.

    Example:
        >>> round(f_score(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 2.0]]), 1.0), 4)
        0.6667
    """
    p, r = precision_recall(pred_points, gt_points, threshold, nn)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def normal_consistency(pred_points, pred_normals, gt_points, gt_normals,
                       nn: NearestNeighbours | None = None) -> float:
    """``(mean_x |n_x . n_gt(nn(x))| + mean_y |n_y . n_pred(nn(y))|) / 2`` for unit normals ``[N,3]``.

    Example:
        >>> n = torch.tensor([[0.0, 0.0, 1.0]])
        >>> normal_consistency(torch.zeros(1, 3), n, torch.ones(1, 3), -n)
        1.0
    """
    nn = nn or nearest_neighbours(pred_points, gt_points)
    npred, ngt = _points("pred_normals", pred_normals), _points("gt_normals", gt_normals)
    a = np.abs((npred * ngt[nn.pred_to_gt_index]).sum(1)).mean()
    b = np.abs((ngt * npred[nn.gt_to_pred_index]).sum(1)).mean()
    return float((a + b) / 2)


def is_watertight(faces, vertices=None) -> bool:
    """True when every undirected edge of ``faces[F,3]`` is used by exactly two faces (closed, edge-manifold).

    With ``vertices[V,3]`` given, vertices at identical positions are merged first, so meshes split at
    texture seams (glTF) count as closed. Orientation is not checked.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> is_watertight(box((1.0, 1.0, 1.0)).faces), is_watertight(box((1.0, 1.0, 1.0)).faces[1:])
        (True, False)
    """
    f = index_tensor("faces", faces, "[F,3]", last_dim=3).cpu().numpy()
    if f.shape[0] == 0:
        return False
    if vertices is not None:
        v = _points("vertices", vertices)
        _, canonical = np.unique(v, axis=0, return_inverse=True)
        f = canonical.reshape(-1)[f]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def volume_iou(pred, gt, n: int = 100_000, seed: int = 0) -> float:
    """Volume IoU ``|A and B| / |A or B|`` of two closed meshes (:class:`Mesh` or ``(vertices, faces)``).

    Monte Carlo: ``n`` points uniform in the box bounding both meshes, occupancy by
    :func:`~unrender.geometry.inside.inside_mesh`, ``IoU = #(in A and in B) / #(in A or in B)``
    (1 when no sample is in either). Standard error about ``sqrt(IoU (1 - IoU) / (n u))`` with ``u``
    the fraction of the box inside the union.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> round(volume_iou(box((1.0, 1.0, 1.0)), box((1.0, 1.0, 1.0), center=(0.5, 0, 0))), 1)
        0.3
    """
    va, fa = _mesh_arrays("pred", pred)
    vb, fb = _mesh_arrays("gt", gt)
    lo = np.minimum(va.min(0), vb.min(0))
    hi = np.maximum(va.max(0), vb.max(0))
    samples = lo + np.random.default_rng(seed).random((int(n), 3)) * (hi - lo)
    occ_a = inside_mesh(va, fa, samples).numpy()
    occ_b = inside_mesh(vb, fb, samples).numpy()
    union = (occ_a | occ_b).sum()
    return 1.0 if union == 0 else float((occ_a & occ_b).sum() / union)


@dataclass
class MeshMetrics:
    """Result of :func:`evaluate_meshes`; distances in units of the ground truth's longest bbox side.

    Attributes:
        chamfer_l1, chamfer_l2: Chamfer distances (see the module docstring).
        accuracy, completeness: mean pred->gt and gt->pred distances.
        normal_consistency: in [0, 1], 1 = normals agree everywhere.
        f_score, precision, recall: ``{threshold: value}``.
        volume_iou: ``None`` unless both meshes are watertight.
        scale: the factor applied to both meshes (1 / longest side of the ground truth's bbox).
        n_points: surface samples per mesh.
    """

    chamfer_l1: float
    chamfer_l2: float
    accuracy: float
    completeness: float
    normal_consistency: float
    f_score: dict[float, float]
    precision: dict[float, float]
    recall: dict[float, float]
    volume_iou: float | None
    scale: float
    n_points: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Flat JSON-ready dict; per-threshold values as ``"f_score@0.01"`` etc."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, dict)}
        for name in ("f_score", "precision", "recall"):
            for tau, value in getattr(self, name).items():
                out[f"{name}@{tau:g}"] = value
        return out


def evaluate_meshes(pred: Mesh, gt: Mesh, n_points: int = 100_000, thresholds=(0.005, 0.01, 0.02),
                    seed: int = 0) -> MeshMetrics:
    """All geometry metrics of ``pred`` against ``gt`` (both in the same world frame, no alignment).

    Both meshes are mapped by ``x -> (x - c) s`` with ``c`` the centre of the ground truth's bounding
    box and ``s = 1 / (longest side of that box)``. Then ``n_points`` area-weighted samples per surface
    (the same ``seed`` for both, so identical meshes give identical samples and exactly zero distance)
    give Chamfer-L1/L2, accuracy, completeness, normal consistency and F-score/precision/recall at each
    threshold; volume IoU (``n_points`` samples) is computed only when both meshes are watertight
    (:func:`is_watertight` after merging coincident vertices).

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> m = evaluate_meshes(icosphere(3, radius=0.5), icosphere(3, radius=0.52), n_points=5000)
        >>> 0.005 < m.chamfer_l1 < 0.03
        True
    """
    vp, fp = _mesh_arrays("pred", pred)
    vg, fg = _mesh_arrays("gt", gt)
    lo, hi = vg.min(0), vg.max(0)
    side = float((hi - lo).max())
    if not side > 0:
        raise InputError("gt has a zero-size bounding box; it cannot set the metric scale.")
    centre, scale = (lo + hi) / 2, 1.0 / side
    vp, vg = (vp - centre) * scale, (vg - centre) * scale
    xp, np_ = sample_surface(vp, fp, n_points, seed)
    xg, ng = sample_surface(vg, fg, n_points, seed)
    nn = nearest_neighbours(xp, xg)
    pr = {float(t): precision_recall(xp, xg, float(t), nn) for t in thresholds}
    fs = {t: (0.0 if p + r == 0 else 2 * p * r / (p + r)) for t, (p, r) in pr.items()}
    iou = None
    if is_watertight(fp, vp) and is_watertight(fg, vg):
        iou = volume_iou((vp, fp), (vg, fg), n_points, seed)
    return MeshMetrics(
        chamfer_l1=chamfer_distance(xp, xg, "l1", nn), chamfer_l2=chamfer_distance(xp, xg, "l2", nn),
        accuracy=float(nn.pred_to_gt.mean()), completeness=float(nn.gt_to_pred.mean()),
        normal_consistency=normal_consistency(xp, np_, xg, ng, nn), f_score=fs,
        precision={t: p for t, (p, _) in pr.items()}, recall={t: r for t, (_, r) in pr.items()},
        volume_iou=iou, scale=scale, n_points=int(n_points))
