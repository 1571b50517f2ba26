"""Feature matching between the instances of one photo, as Structure from Duplicates does it.

Every instance ``k`` is cut out of the photo (its mask's bounding box plus a margin) and SIFT features are
detected inside its mask. For a pair ``(i, j)`` the crop of ``j`` is also rotated in-plane by
``a = 360 m / rotations`` degrees (``m = 0 .. rotations-1``) and its features re-detected on the rotated
crop; keypoints are mapped back to photo pixels with the inverse rotation. For each ``a`` the
descriptors of ``i`` are matched to those of rotated ``j`` (nearest neighbour, Lowe's ratio test
``d1 < ratio d2``) and verified with a RANSAC essential matrix; the rotation with the most inliers wins.

Why an essential matrix between two instances of the *same* photo: the copies are identical, so an
object point ``X`` (object frame) appears at ``x_i ~ K (R_i X + t_i)`` in instance ``i`` and at
``x_j ~ K (R_j X + t_j)`` in instance ``j``. Each instance is a "virtual camera" looking at one shared
object with the photo's intrinsics ``K``, and ``(x_i, x_j)`` obey ``x_j^T K^-T E K^-1 x_i = 0`` with
``E = [t]_x R``, ``R = R_j R_i^T``, ``t = t_j - R t_i`` (up to scale): the relative pose of the two
virtual cameras. All camera-frame quantities here use OpenCV axes (x right, y down, z forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import InputError


@dataclass
class MatchConfig:
    """Settings of :func:`match_instances`.

    Attributes:
        rotations: in-plane rotations of the second crop tried per pair (step ``360 / rotations`` degrees);
            1 tries none.
        ratio: Lowe's ratio test threshold (a match is kept when ``d1 < ratio * d2``).
        ransac_threshold_px: RANSAC inlier threshold of the essential matrix (pixels).
        ransac_confidence: RANSAC success probability.
        min_inliers: a pair with fewer verified matches is dropped from the view graph.
        margin_px: pixels added around each mask's bounding box before cropping.
        contrast_threshold: SIFT's contrast threshold (OpenCV default 0.04; lower finds more features on the
            small crops of a crowded photo).
        max_features: at most this many SIFT features per crop and rotation (0 = no limit).
        upscale_to: crops whose longer side is shorter are enlarged (bicubic) to this many pixels before
            detection: small instances give SIFT too few scales otherwise (0 = never).
    """

    rotations: int = 8
    ratio: float = 0.8
    ransac_threshold_px: float = 1.0
    ransac_confidence: float = 0.999
    min_inliers: int = 15
    margin_px: int = 8
    contrast_threshold: float = 0.02
    max_features: int = 0
    upscale_to: int = 320


@dataclass
class Features:
    """SIFT features of one instance crop under one in-plane rotation.

    Attributes:
        points: keypoint positions ``[K,2]`` float64 in *photo* pixels (x right, y down), rotation undone.
        descriptors: ``[K,128]`` float32.
    """

    points: np.ndarray
    descriptors: np.ndarray


@dataclass
class PairMatch:
    """Verified matches between instances ``i < j`` and their relative virtual-camera pose.

    Attributes:
        i, j: instance indices.
        points_i, points_j: matched photo pixels ``[M,2]`` float64 (RANSAC and cheirality inliers only).
        R: ``[3,3]`` relative rotation ``R_j R_i^T`` (OpenCV camera axes).
        t: ``[3]`` unit relative translation ``t_j - R t_i`` (up to scale).
        angle_deg: the in-plane rotation of crop ``j`` that gave the most inliers.
        tentative: matches that passed the ratio test at that rotation (before RANSAC).
    """

    i: int
    j: int
    points_i: np.ndarray
    points_j: np.ndarray
    R: np.ndarray
    t: np.ndarray
    angle_deg: float
    tentative: int

    @property
    def inliers(self) -> int:
        return int(self.points_i.shape[0])


def to_gray8(image_linear) -> np.ndarray:
    """8-bit sRGB luminance ``[H,W]`` uint8 of a linear image ``[H,W,3]`` (SIFT wants perceptual contrast)."""
    from ...color import linear_to_srgb

    srgb = linear_to_srgb(image_linear.clamp(0, 1) if hasattr(image_linear, "clamp") else np.clip(image_linear, 0, 1))
    a = np.asarray(srgb, dtype=np.float64)
    y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)


def crop_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` bounding box of ``mask[H,W]`` grown by ``margin`` and clipped to the image."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (max(0, int(xs.min()) - margin), max(0, int(ys.min()) - margin),
            min(w, int(xs.max()) + 1 + margin), min(h, int(ys.max()) + 1 + margin))


def _sift(cfg: MatchConfig):
    import cv2

    return cv2.SIFT_create(nfeatures=cfg.max_features, contrastThreshold=cfg.contrast_threshold)


def detect_rotated(gray: np.ndarray, mask: np.ndarray, angle_deg: float, cfg: MatchConfig, sift=None) -> Features:
    """SIFT features of the crop of instance ``mask[H,W]`` rotated in-plane by ``angle_deg`` (counter-clockwise).

    The crop is rotated about its centre onto a canvas large enough to hold it (no corner is cut);
    keypoints ``p'`` on the canvas map back to photo pixels by ``p = (A^-1 (p' - b) + 0.5) / z - 0.5 + (x0, y0)``,
    where ``p' = A p_crop + b`` is the rotation's affine map and ``z`` the crop's enlargement (``upscale_to``).
    """
    import cv2

    sift = sift or _sift(cfg)
    x0, y0, x1, y1 = crop_box(mask, cfg.margin_px)
    crop = gray[y0:y1, x0:x1]
    cmask = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    h, w = crop.shape
    zoom = max(1.0, cfg.upscale_to / max(h, w)) if cfg.upscale_to else 1.0
    if zoom > 1.0:
        crop = cv2.resize(crop, (round(w * zoom), round(h * zoom)), interpolation=cv2.INTER_CUBIC)
        cmask = cv2.resize(cmask, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
        h, w = crop.shape
    if angle_deg % 360 == 0:
        A = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        rot, rmask = crop, cmask
    else:
        c, s = abs(math.cos(math.radians(angle_deg))), abs(math.sin(math.radians(angle_deg)))
        cw, ch = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
        A = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, 1.0)
        A[:, 2] += [(cw - w) / 2.0, (ch - h) / 2.0]  # keep the rotated crop centred on the larger canvas
        rot = cv2.warpAffine(crop, A, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rmask = cv2.warpAffine(cmask, A, (cw, ch), flags=cv2.INTER_NEAREST, borderValue=0)
    kps, desc = sift.detectAndCompute(rot, rmask)
    if desc is None or len(kps) == 0:
        return Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32))
    p = np.array([k.pt for k in kps], dtype=np.float64)
    back = (p - A[:, 2]) @ np.linalg.inv(A[:, :2]).T
    # Pixel centres: crop pixel (c + 0.5) / zoom - 0.5 is the photo pixel the zoomed pixel c samples.
    back = (back + 0.5) / zoom - 0.5
    return Features(back + [x0, y0], desc.astype(np.float32))


def ratio_matches(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float) -> np.ndarray:
    """Index pairs ``[M,2]`` (rows of ``a``, rows of ``b``) passing Lowe's test ``d1 < ratio d2`` (L2 distances)."""
    import cv2

    if desc_a.shape[0] < 2 or desc_b.shape[0] < 2:
        return np.zeros((0, 2), np.int64)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    pairs = [(m[0].queryIdx, m[0].trainIdx) for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def verify_pair(pa: np.ndarray, pb: np.ndarray, K: np.ndarray, cfg: MatchConfig):
    """RANSAC essential matrix + cheirality check on matched pixels ``pa[M,2]``, ``pb[M,2]``.

    Returns ``(inlier mask[M] bool, R[3,3], t[3])`` with ``x_b = R x_a + t`` (OpenCV camera axes), or
    ``None`` when fewer than 8 matches or no model was found.
    """
    import cv2

    if pa.shape[0] < 8:
        return None
    try:
        E, mask = cv2.findEssentialMat(pa, pb, K, method=cv2.RANSAC, prob=cfg.ransac_confidence,
                                       threshold=cfg.ransac_threshold_px)
    except cv2.error:  # degenerate samples (repeated points) make the five-point solver's polynomial vanish
        return None
    if E is None or E.shape != (3, 3):
        return None  # several solutions stacked ([3k,3]) only for 5 exact points; treat as a failure
    _, R, t, pose_mask = cv2.recoverPose(E, pa, pb, K, mask=mask.copy())
    inl = pose_mask.ravel() > 0
    return inl, R, t.ravel()


def instance_features(gray: np.ndarray, masks: np.ndarray, cfg: MatchConfig) -> list[list[Features]]:
    """Features ``[N][rotations]`` of every instance crop (``masks[N,H,W]`` bool) at every tried rotation."""
    sift = _sift(cfg)
    angles = [360.0 * m / cfg.rotations for m in range(cfg.rotations)]
    return [[detect_rotated(gray, m, a, cfg, sift) for a in angles] for m in masks]


def match_instances(image, masks: np.ndarray, K: np.ndarray, cfg: MatchConfig | None = None) -> list[PairMatch]:
    """Verified matches of every instance pair (module docstring); pairs under ``cfg.min_inliers`` are left out.

    Args:
        image: the photo ``[H,W,3]`` linear (tensor or array).
        masks: instance masks ``[N,H,W]`` bool.
        K: intrinsics ``[3,3]``.
    Returns:
        a list of :class:`PairMatch` with ``i < j``.
    """
    cfg = cfg or MatchConfig()
    if cfg.rotations < 1:
        raise InputError(f"rotations must be at least 1; got {cfg.rotations}.")
    masks = np.asarray(masks, dtype=bool)
    gray = to_gray8(image)
    feats = instance_features(gray, masks, cfg)
    angles = [360.0 * m / cfg.rotations for m in range(cfg.rotations)]
    pairs = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            best = None
            for r, angle in enumerate(angles):
                fa, fb = feats[i][0], feats[j][r]
                idx = ratio_matches(fa.descriptors, fb.descriptors, cfg.ratio)
                if idx.shape[0] < max(8, cfg.min_inliers):
                    continue
                pa, pb = fa.points[idx[:, 0]], fb.points[idx[:, 1]]
                found = verify_pair(pa, pb, K, cfg)
                if found is None:
                    continue
                inl, R, t = found
                if best is None or inl.sum() > best.inliers:
                    best = PairMatch(i, j, pa[inl], pb[inl], R, t, angle, int(idx.shape[0]))
            if best is not None and best.inliers >= cfg.min_inliers:
                pairs.append(best)
    return pairs
