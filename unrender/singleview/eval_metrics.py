"""Scoring one predicted mesh against one ground-truth object under DIB-R's and LIST's protocols.

Both protocols compare a prediction with the ground truth *as they are*, in the collection's object frame
(centred, longest side 1: Occupancy Networks' normalised ShapeNet, which DVR's collection and ours use), with
no alignment or rescaling. ``d(x, S) = min_{s in S} |x - s|`` (Euclidean) between point sets; ``X`` = points
on the prediction, ``Y`` = points on the ground truth.

DIB-R protocol (:class:`DIBRProtocol`), as ``chamfer/check_chamfer.py`` of DIB-R's released single-image code
(nv-tlabs/DIB-R-Single-Image-3D-Reconstruction) computes it:

* ``N = 2,500`` points per surface: area-weighted samples of the prediction; of the ground truth, samples of
  ``mesh.obj`` (the script takes a random 2,500-subset of ``pointcloud.npz``, itself an area-weighted sample
  of the same surface -- used here too when an object has no ``mesh.obj``);
* ``Chamfer-L1 = (mean_x d(x, Y) + mean_y d(y, X)) / 2`` -- the **mean** of the two directed mean
  *Euclidean* (not squared) distances: the script's CUDA kernel takes ``sqrt`` of the squared distance, then
  ``cf = (dist1.mean() + dist2.mean()) / 2``;
* ``F@tau = 2 P R / (P + R)`` with ``P = |{x : d(x, Y) < tau}| / N``, ``R = |{y : d(y, X) < tau}| / N``
  at ``tau = 0.01, 0.02, 0.03, 0.04, 0.05`` (the script lists every 0.005 from 0.01 to 0.05; pass
  ``thresholds=DIBR_SCRIPT_THRESHOLDS`` for all nine). It tests ``<=`` and adds ``1e-8`` to the
  denominator: both differ from this only on a set of measure zero / below print precision.

LIST protocol (:class:`LISTProtocol`), as ``evaluation/eval_util.py`` of LIST's code
(robotic-vision-lab/Learning-Implicitly-From-Spatial-Transformers-Network, adapted from Occupancy Networks):

* ``N = 100,000`` area-weighted points per surface (prediction and ground-truth mesh);
* ``Chamfer-L2 x 1e4 = 1e4 (mean_x d(x, Y)^2 + mean_y d(y, X)^2) / 2`` -- the **mean** (``0.5 a + 0.5 b``)
  of the two directed mean *squared* distances, times 10^4;
* ``F@tau`` as above at ``tau = 0.005, 0.01, 0.05`` (LIST swaps the names precision/recall, which leaves
  F unchanged, and adds ``1e-5`` to the denominator);
* volume IoU ``= |A and B| / |A or B|`` from ``iou_samples`` points uniform in the bounding box of both
  meshes (LIST uses 10 N points in the fixed cube ``[-0.5, 0.5]^3``; the union box gives the same
  expectation without clipping parts outside the cube). Occupancy (:func:`mesh_occupancy`): for a closed
  mesh, ray parity (:func:`unrender.geometry.inside.inside_mesh`), as LIST/Occupancy Networks'
  ``check_mesh_contains``; a prediction that is not closed (holes, a marching-cubes surface cut by its grid)
  has no parity-defined inside, so there a point is inside when it lies in the mesh's bounding box and its
  generalized winding number ``w`` has ``|w| > 0.5`` (Jacobson et al. 2013; ``|w|`` because orientation is
  not checked). Without ``mesh.obj`` the ground-truth occupancy comes from ``points.npz`` (IoU over those
  labelled points, as Occupancy Networks does), else IoU is NaN.

A prediction that is empty, has NaN vertices or zero area is **scored, not skipped** (DIB-R's script skips
meshes it cannot sample, which would reward failing): its point set is its finite vertices (the origin
when there are none) and it occupies no volume.

Example:
    >>> from unrender.geometry.primitives import box
    >>> gt = GroundTruth.from_mesh(box((1.0, 1.0, 1.0)))
    >>> s = score_prediction(box((1.0, 1.0, 1.0)), gt, DIBRProtocol(points=5000), None, seed=0)
    >>> 0.005 < s.metrics["dibr/chamfer_l1"] < 0.02, s.metrics["dibr/f@0.05"] > 0.99, s.failed
    (True, True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numba import njit, prange
from scipy.spatial import cKDTree

from ..errors import DataError, InputError
from ..geometry.inside import inside_mesh
from ..metrics.geometry import is_watertight, sample_surface
from ..mesh import Mesh
from ..render.kernel_config import PARALLEL

#: The nine thresholds DIB-R's ``check_chamfer.py`` evaluates (0.01 to 0.05 every 0.005).
DIBR_SCRIPT_THRESHOLDS = (0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05)


@dataclass(frozen=True)
class DIBRProtocol:
    """DIB-R's evaluation (module docstring).

    Attributes:
        points: surface samples per mesh (DIB-R: 2,500).
        thresholds: F-score distances, in units of the object's longest side.

    Example:
        >>> DIBRProtocol(thresholds=DIBR_SCRIPT_THRESHOLDS).points
        2500
    """

    points: int = 2500
    thresholds: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04, 0.05)


@dataclass(frozen=True)
class LISTProtocol:
    """LIST's evaluation (module docstring).

    Attributes:
        points: surface samples per mesh (LIST: 100,000).
        thresholds: F-score distances.
        iou_samples: uniform points in the union bounding box for volume IoU (LIST: 10 x points).

    Example:
        >>> LISTProtocol().thresholds
        (0.005, 0.01, 0.05)
    """

    points: int = 100_000
    thresholds: tuple[float, ...] = (0.005, 0.01, 0.05)
    iou_samples: int = 100_000


@dataclass
class GroundTruth:
    """One ground-truth object: its mesh, else its stored surface points and occupancy samples (numpy, float64).

    Attributes:
        vertices, faces: the watertight mesh ``[V,3]``, ``[F,3]`` (``mesh.obj``), or ``None``.
        points: surface points ``[P,3]`` (``pointcloud.npz``) used when there is no mesh, or ``None``.
        occupancy_points, occupancy: labelled points ``[Q,3]`` / ``[Q]`` bool (``points.npz``), or ``None``.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> GroundTruth.from_mesh(box((1.0, 1.0, 1.0))).has_mesh
        True
    """

    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    points: np.ndarray | None = None
    occupancy_points: np.ndarray | None = None
    occupancy: np.ndarray | None = None

    @classmethod
    def from_mesh(cls, mesh: Mesh) -> GroundTruth:
        """Ground truth from an in-memory mesh (vertices in the object frame)."""
        v, f = _valid_arrays(mesh)
        if v is None:
            raise InputError("the ground-truth mesh is empty, has NaN vertices or zero area; it cannot be scored "
                             "against.")
        return cls(vertices=v, faces=f)

    @property
    def has_mesh(self) -> bool:
        """True when the ground truth is a mesh (else stored points)."""
        return self.vertices is not None


def load_ground_truth(model_dir) -> GroundTruth:
    """Ground truth of one object folder of a DVR collection: ``mesh.obj``, else ``pointcloud.npz`` (+ ``points.npz``).

    Example:
        >>> gt = load_ground_truth("coll/03001627/<model>")   # doctest: +SKIP
    """
    from ..data.collection import read_occupancy_points
    from ..io.mesh_files import load_mesh

    model_dir = Path(model_dir)
    if (model_dir / "mesh.obj").is_file():
        return GroundTruth.from_mesh(load_mesh(model_dir / "mesh.obj"))
    pc = model_dir / "pointcloud.npz"
    if not pc.is_file():
        raise DataError(f"{model_dir} has neither mesh.obj nor pointcloud.npz; the evaluation needs one of them "
                        f"as ground truth (regenerate the collection).")
    with np.load(pc) as data:
        if "points" not in data:
            raise DataError(f"{pc} holds no 'points' array; regenerate it.")
        points = data["points"].astype(np.float64)
    gt = GroundTruth(points=points)
    if (model_dir / "points.npz").is_file():
        q, inside = read_occupancy_points(model_dir)
        gt.occupancy_points, gt.occupancy = q.double().numpy(), inside.numpy()
    return gt


# ------------------------------------------------------------------------------------------- occupancy


@njit(parallel=PARALLEL, cache=True)
def _winding_kernel(tri, points, out):  # pragma: no cover - compiled
    """``out[i] = sum_t Omega_t(points[i]) / 4 pi`` (van Oosterom & Strackee's signed solid angle)."""
    for i in prange(points.shape[0]):
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        total = 0.0
        for t in range(tri.shape[0]):
            ax, ay, az = tri[t, 0, 0] - px, tri[t, 0, 1] - py, tri[t, 0, 2] - pz
            bx, by, bz = tri[t, 1, 0] - px, tri[t, 1, 1] - py, tri[t, 1, 2] - pz
            cx, cy, cz = tri[t, 2, 0] - px, tri[t, 2, 1] - py, tri[t, 2, 2] - pz
            la = math.sqrt(ax * ax + ay * ay + az * az)
            lb = math.sqrt(bx * bx + by * by + bz * bz)
            lc = math.sqrt(cx * cx + cy * cy + cz * cz)
            det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
            den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc + (bx * cx + by * cy + bz * cz) * la
                   + (cx * ax + cy * ay + cz * az) * lb)
            total += 2.0 * math.atan2(det, den)
        out[i] = total / (4.0 * math.pi)


def winding_numbers(vertices, faces, points) -> np.ndarray:
    """Generalized winding number ``w[P]`` of ``points[P,3]`` w.r.t. the triangles ``vertices[V,3]``, ``faces[F,3]``.

    ``w(p) = sum_t Omega_t(p) / (4 pi)``, ``tan(Omega / 2) = a . (b x c) / (|a||b||c| + (a.b)|c| + (b.c)|a|
    + (c.a)|b|)`` with ``a, b, c`` the corners minus ``p``: the formula of
    :func:`unrender.geometry.inside.winding_number` as a compiled parallel loop (``O(P F)``, ~100x faster).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> w = winding_numbers(m.vertices, m.faces, np.array([[0.0, 0, 0], [2.0, 0, 0]]))
        >>> [round(abs(float(x)), 6) for x in w]
        [1.0, 0.0]
    """
    v = np.ascontiguousarray(torch.as_tensor(vertices).detach().cpu().double().numpy())
    f = torch.as_tensor(faces).detach().cpu().long().numpy()
    p = np.ascontiguousarray(torch.as_tensor(points).detach().cpu().double().numpy())
    out = np.zeros(p.shape[0])
    if f.shape[0] and p.shape[0]:
        _winding_kernel(np.ascontiguousarray(v[f]), p, out)
    return out


def mesh_occupancy(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which of ``points[P,3]`` are inside the mesh ``vertices[V,3]``, ``faces[F,3]``: bool ``[P]``.

    Closed mesh (every edge shared by two faces after merging coincident vertices): ray parity,
    :func:`unrender.geometry.inside.inside_mesh`. Otherwise: inside the mesh's bounding box and
    ``|w| > 0.5`` for the winding number ``w`` of :func:`winding_numbers` (module docstring).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> m = box((1.0, 1.0, 1.0))
        >>> open_box = (m.vertices.double().numpy(), m.faces.numpy()[2:])  # two triangles removed
        >>> mesh_occupancy(*open_box, np.array([[0.0, 0, 0], [0.0, 0, 0.9]])).tolist()
        [True, False]
    """
    if is_watertight(faces, vertices):
        return inside_mesh(vertices, faces, points).numpy()
    lo, hi = vertices[np.unique(faces)].min(0), vertices[np.unique(faces)].max(0)
    in_box = np.all((points >= lo) & (points <= hi), axis=1)
    result = np.zeros(points.shape[0], dtype=bool)
    if in_box.any():
        result[in_box] = np.abs(winding_numbers(vertices, faces, points[in_box])) > 0.5
    return result


# ------------------------------------------------------------------------------------------- scoring


def _valid_arrays(mesh: Mesh) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(vertices float64, faces int64)`` for a mesh with finite vertices and positive area, else ``(None, None)``."""
    v = mesh.vertices.detach().cpu().double().numpy()
    f = mesh.faces.detach().cpu().long().numpy()
    if f.shape[0] == 0 or not np.isfinite(v).all():
        return None, None
    tri = v[f]
    if not np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() > 0:
        return None, None
    return v, f


def _fallback_points(mesh: Mesh) -> np.ndarray:
    """Point set scored for a failed prediction: its finite vertices, else the origin."""
    v = mesh.vertices.detach().cpu().double().numpy().reshape(-1, 3)
    v = v[np.isfinite(v).all(1)]
    return v if len(v) else np.zeros((1, 3))


def ground_truth_points(gt: GroundTruth, n: int, seed: int) -> np.ndarray:
    """``n`` points ``[n,3]`` on the ground-truth surface: area-weighted mesh samples, else a random subset of
    the stored surface points (with replacement only when fewer than ``n`` are stored).

    Example:
        >>> from unrender.geometry.primitives import box
        >>> ground_truth_points(GroundTruth.from_mesh(box((1.0, 1.0, 1.0))), 10, seed=0).shape
        (10, 3)
    """
    if gt.has_mesh:
        return sample_surface(gt.vertices, gt.faces, n, seed)[0].numpy()
    if gt.points is None or not len(gt.points):
        raise DataError("the ground truth has neither a mesh nor surface points; regenerate the collection.")
    rng = np.random.default_rng(seed)
    return gt.points[rng.choice(len(gt.points), n, replace=len(gt.points) < n)]


def nearest_distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``d(q, points)`` for every row of ``queries[Q,3]``: exact Euclidean nearest-neighbour distances ``[Q]``.

    scipy ``cKDTree`` built with sliding-midpoint splits and uncompacted nodes: on surface samples queried from
    a distant surface (a poor prediction) that is about 10x faster than the default median/compact tree.

    Example:
        >>> nearest_distances(np.zeros((1, 3)), np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 9.0]])).tolist()
        [5.0]
    """
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    return tree.query(queries, k=1, workers=-1)[0]


def point_set_scores(pred_points, gt_points, thresholds, squared: bool = False) -> tuple[float, dict[float, float]]:
    """``(Chamfer, {tau: F-score})`` of two point sets ``[Np,3]``, ``[Ng,3]`` (module docstring).

    Chamfer ``= (mean_x d(x, Y)^k + mean_y d(y, X)^k) / 2`` with ``k = 2`` if ``squared`` else 1;
    ``F@tau = 2 P R / (P + R)`` (0 when ``P + R = 0``), strict ``d < tau``.

    Example:
        >>> x = np.array([[0.0, 0, 0], [1.0, 0, 0]]); y = np.array([[0.0, 0, 0.03]])
        >>> cd, f = point_set_scores(x, y, (0.05,))
        >>> round(cd, 6), round(f[0.05], 6)       # ((0.03 + 1.0004499) / 2 + 0.03) / 2 ; P = 1/2, R = 1
        (0.272612, 0.666667)
    """
    x, y = np.asarray(pred_points, dtype=np.float64), np.asarray(gt_points, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != 3 or y.shape[1] != 3 or not len(x) or not len(y):
        raise InputError(f"point sets must be non-empty [N,3] arrays; got {x.shape} and {y.shape}.")
    d_xy, d_yx = nearest_distances(x, y), nearest_distances(y, x)
    a, b = (d_xy, d_yx) if not squared else (d_xy ** 2, d_yx ** 2)
    scores = {}
    for tau in thresholds:
        p, r = float((d_xy < tau).mean()), float((d_yx < tau).mean())
        scores[float(tau)] = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return float((a.mean() + b.mean()) / 2), scores


def occupancy_iou(pred: Mesh, gt: GroundTruth, samples: int, seed: int) -> float:
    """Volume IoU of the prediction and the ground truth (module docstring); NaN when the GT has no volume data.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> iou = occupancy_iou(box((1.2, 1.2, 1.2)), GroundTruth.from_mesh(box((1.0, 1.0, 1.0))), 50_000, 0)
        >>> abs(iou - 1 / 1.2 ** 3) < 0.01
        True
    """
    vp, fp = _valid_arrays(pred)
    if gt.has_mesh:
        boxes = [gt.vertices] + ([vp[np.unique(fp)]] if vp is not None else [])
        lo = np.min([b.min(0) for b in boxes], axis=0)
        hi = np.max([b.max(0) for b in boxes], axis=0)
        q = lo + np.random.default_rng(seed).random((int(samples), 3)) * (hi - lo)
        occ_gt = mesh_occupancy(gt.vertices, gt.faces, q)
    elif gt.occupancy is not None:
        q, occ_gt = gt.occupancy_points, gt.occupancy
    else:
        return float("nan")
    occ_pred = mesh_occupancy(vp, fp, q) if vp is not None else np.zeros(len(q), dtype=bool)
    union = (occ_pred | occ_gt).sum()
    return 1.0 if union == 0 else float((occ_pred & occ_gt).sum() / union)


@dataclass
class PredictionScore:
    """Metrics of one prediction.

    Attributes:
        metrics: ``"dibr/chamfer_l1"``, ``"dibr/f@0.01"``, ..., ``"list/chamfer_l2x1e4"``, ``"list/f@0.005"``,
            ..., ``"list/iou"`` (only the requested protocols).
        failed: the prediction was empty, non-finite or of zero area (scored by its fallback points).

    Example:
        >>> PredictionScore({"dibr/chamfer_l1": 0.03}).failed
        False
    """

    metrics: dict[str, float] = field(default_factory=dict)
    failed: bool = False


def score_prediction(pred: Mesh, gt: GroundTruth, dibr: DIBRProtocol | None, lst: LISTProtocol | None,
                     seed: int = 0) -> PredictionScore:
    """Score ``pred`` against ``gt`` under the protocols given (``None`` skips one); see the module docstring.

    Seeds: prediction samples ``seed``, ground-truth samples ``seed + 1``, IoU samples ``seed + 2`` (numpy
    PCG64), so the two surfaces are sampled independently, as both reference scripts do: a perfect prediction
    therefore scores the sampling floor (Chamfer-L1 about 0.01 at 2,500 points), not exactly 0.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> s = score_prediction(icosphere(3, 0.5), GroundTruth.from_mesh(icosphere(3, 0.5)), None,
        ...                      LISTProtocol(points=20_000, iou_samples=20_000))
        >>> s.metrics["list/chamfer_l2x1e4"] < 1.0, s.metrics["list/iou"] > 0.99
        (True, True)
    """
    vp, fp = _valid_arrays(pred)
    score = PredictionScore(failed=vp is None)
    for name, proto, squared in (("dibr", dibr, False), ("list", lst, True)):
        if proto is None:
            continue
        if int(proto.points) < 1:
            raise InputError(f"{name} protocol points must be >= 1; got {proto.points}.")
        x = sample_surface(vp, fp, proto.points, seed)[0].numpy() if vp is not None else _fallback_points(pred)
        cd, fs = point_set_scores(x, ground_truth_points(gt, proto.points, seed + 1), proto.thresholds, squared)
        if squared:
            score.metrics[f"{name}/chamfer_l2x1e4"] = cd * 1e4
        else:
            score.metrics[f"{name}/chamfer_l1"] = cd
        score.metrics.update({f"{name}/f@{tau:g}": v for tau, v in fs.items()})
        if squared:
            score.metrics[f"{name}/iou"] = occupancy_iou(pred, gt, proto.iou_samples, seed + 2)
    return score
