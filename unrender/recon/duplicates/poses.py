"""Poses of all instances of one photo: match (:mod:`.matching`), track (:mod:`.tracks`), solve (:mod:`.sfm`).

``estimate_poses(data)`` returns every instance's object-to-camera and object-to-world pose and the
sparse object points. Conventions of the output (:class:`DuplicatePoses`):

* camera axes: OpenGL (x right, y up, looking down -z), as everywhere in unrender; object-to-camera
  ``T_k`` maps object points into the photo's camera frame;
* object frame (one photo cannot tell more than a similarity, so it is fixed by convention): origin at
  the median of the sparse points, axes those of the reference instance's camera frame (its ``T_k`` has
  rotation ``I``), scale such that the points' RMS distance from the origin is :data:`POINT_RMS_RADIUS`;
* world frame: ``object_to_world_k = c2w T_k`` with the photo's camera-to-world ``c2w`` (identity unless
  given: then the world is the camera frame). The depth of the scene is known only up to the same global
  scale as the object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from ...errors import DataError
from .inputs import DuplicatesInput
from .matching import MatchConfig, PairMatch, match_instances
from .sfm import SfMConfig, SfMResult, incremental_sfm, resolve_necker
from .tracks import build_tracks

#: RMS distance of the sparse object points from the object origin in the output frame.
POINT_RMS_RADIUS = 0.5
#: OpenCV <-> OpenGL camera axes (flip y and z); its own inverse.
CV_TO_GL = np.diag([1.0, -1.0, -1.0])


@dataclass
class PoseConfig:
    """Settings of :func:`estimate_poses`.

    Attributes:
        match: feature matching and pair verification.
        sfm: incremental reconstruction and bundle adjustment.
        snap_px: feature positions of one instance closer than this are one feature (track building).
    """

    match: MatchConfig = field(default_factory=MatchConfig)
    sfm: SfMConfig = field(default_factory=SfMConfig)
    snap_px: float = 1.0


@dataclass
class DuplicatePoses:
    """Result of :func:`estimate_poses` (frames in the module docstring).

    Attributes:
        object_to_camera: ``[N,4,4]`` float64, OpenGL camera axes; NaN for instances not posed.
        object_to_world: ``[N,4,4]`` float64, ``c2w @ object_to_camera``; NaN where not posed.
        posed: ``[N]`` bool.
        points: sparse object points ``[P,3]`` in the object frame.
        point_colors: linear RGB ``[P,3]`` of the points (mean over their observations).
        reprojection_rmse_px: RMS reprojection error of the kept observations, pixels.
        pairs: ``(i, j, inliers)`` of every verified instance pair.
        reference: the instance whose rotation defines the object axes.
        necker_reversed: whether the depth-reversed twin fitted better (:func:`.sfm.resolve_necker`).
    """

    object_to_camera: np.ndarray
    object_to_world: np.ndarray
    posed: np.ndarray
    points: np.ndarray
    point_colors: np.ndarray
    reprojection_rmse_px: float
    pairs: list[tuple[int, int, int]]
    reference: int
    necker_reversed: bool = False

    @property
    def num_posed(self) -> int:
        return int(self.posed.sum())


def normalize_frame(res: SfMResult) -> tuple[np.ndarray, np.ndarray]:
    """Object-to-camera ``[N,4,4]`` (OpenGL axes) and points ``[P,3]`` in the conventional object frame.

    With ``c`` the points' median, ``s = POINT_RMS_RADIUS / rms|X - c|`` and the flip ``F = CV_TO_GL``, new
    object coordinates are ``X' = s F (X - c)``; scaling depths by the same ``s`` keeps every pixel, so
    ``R'_k = F R_k F`` and ``t'_k = s F (R_k c + t_k)`` (the ``F`` on the left turns OpenCV camera axes into
    OpenGL ones; the reference's ``R_k = I`` stays ``I``).
    """
    F = CV_TO_GL
    X = res.points
    c = np.median(X, axis=0) if len(X) else np.zeros(3)
    rms = float(np.sqrt(((X - c) ** 2).sum(1).mean())) if len(X) else 1.0
    s = POINT_RMS_RADIUS / max(rms, 1e-12)
    n = res.posed.shape[0]
    T = np.full((n, 4, 4), np.nan)
    for k in np.nonzero(res.posed)[0]:
        R = Rotation.from_rotvec(res.rvecs[k]).as_matrix()
        T[k] = np.eye(4)
        T[k, :3, :3] = F @ R @ F
        T[k, :3, 3] = s * F @ (R @ c + res.tvecs[k])
    return T, s * (X - c) @ F.T


def match_components(pairs: list[PairMatch]) -> list[set[int]]:
    """Connected components of the graph whose edges are the verified pairs, largest first (ties: more inliers).

    Example:
        >>> from types import SimpleNamespace as P
        >>> match_components([P(i=0, j=2, inliers=30), P(i=5, j=6, inliers=60), P(i=2, j=3, inliers=20)])
        [{0, 2, 3}, {5, 6}]
    """
    parent: dict[int, int] = {}

    def root(a: int) -> int:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for p in pairs:
        parent[root(p.i)] = root(p.j)
    groups: dict[int, set[int]] = {}
    for a in list(parent):
        groups.setdefault(root(a), set()).add(a)
    weight = {r: sum(p.inliers for p in pairs if root(p.i) == r) for r in groups}
    return [groups[r] for r in sorted(groups, key=lambda r: (len(groups[r]), weight[r]), reverse=True)]


def estimate_poses(data: DuplicatesInput, cfg: PoseConfig | None = None, c2w: np.ndarray | None = None,
                   pairs: list[PairMatch] | None = None) -> DuplicatePoses:
    """Object-to-camera and object-to-world poses of every instance of ``data`` (module docstring).

    Args:
        data: photo ``[H,W,3]``, instance masks ``[N,H,W]`` and intrinsics (:func:`.inputs.read_duplicates_input`).
        cfg: settings; default :class:`PoseConfig`.
        c2w: the photo's camera-to-world ``[4,4]`` (OpenGL), if known; default identity.
        pairs: precomputed matches (skips matching), e.g. to try several solver settings.
    Returns:
        :class:`DuplicatePoses`.
    Raises:
        DataError: when no two instances share enough verified matches to start.
    """
    cfg = cfg or PoseConfig()
    K = data.intrinsics.K
    masks = data.masks.numpy() if hasattr(data.masks, "numpy") else np.asarray(data.masks)
    n = masks.shape[0]
    if pairs is None:
        pairs = match_instances(data.image, masks, K, cfg.match)
    if not pairs:
        raise DataError(f"no two instances of {data.image_path} share {cfg.match.min_inliers} verified feature "
                        f"matches; the copies may be too small, too plain or seen from too different sides "
                        f"(try a larger photo or --fov/--focal closer to the truth).")
    res, reversed_ = None, False
    for group in match_components(pairs):  # the largest reconstruction wins; the rest is registered later
        sub = [p for p in pairs if p.i in group]
        r, rev = resolve_necker(incremental_sfm(sub, build_tracks(sub, n, cfg.snap_px), n, K, cfg.sfm), K, cfg.sfm)
        if res is None or r.posed.sum() > res.posed.sum():
            res, reversed_ = r, rev
    o2c, points = normalize_frame(res)
    c2w = np.eye(4) if c2w is None else np.asarray(c2w, np.float64)
    o2w = np.einsum("ij,njk->nik", c2w, o2c)
    img = data.image.numpy() if hasattr(data.image, "numpy") else np.asarray(data.image)
    colors = np.zeros((len(points), 3))
    if len(points):
        h, w = img.shape[:2]
        px = np.clip(np.round(res.obs_uv).astype(int), 0, [w - 1, h - 1])
        np.add.at(colors, res.obs_pt, img[px[:, 1], px[:, 0]])
        colors /= np.maximum(np.bincount(res.obs_pt, minlength=len(points)), 1)[:, None]
    from .bundle import reprojection_errors

    err = reprojection_errors(K, res.rvecs, res.tvecs, res.points, res.obs_cam, res.obs_pt, res.obs_uv)
    rmse = float(np.sqrt((err ** 2).mean())) if err.size else float("nan")
    return DuplicatePoses(o2c, o2w, res.posed, points, colors, rmse, [(p.i, p.j, p.inliers) for p in pairs],
                          res.reference, reversed_)
