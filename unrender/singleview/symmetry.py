"""Mirror symmetry of predicted shapes: a plane of the canonical object frame the collection is symmetric about.

Man-made categories (chairs, tables, airplanes, cars) are left-right symmetric in their canonical frame, which
is how CMR (Kanazawa et al., ECCV 2018) and many single-view methods constrain the side of an object that the
input image does not show. A template whose vertex set is mirror symmetric about the plane ``x_a = 0`` (the
icosphere is, for every axis ``a``) has a permutation ``p`` with ``t[p[i]] = R t[i]``, ``R = diag(..., -1 at a,
...)``; a prediction ``v`` is made symmetric by averaging it with its mirror image:

    v_sym[i] = (v[i] + R v[p[i]]) / 2

so that ``v_sym[p[i]] = R v_sym[i]`` exactly, and the network only learns the symmetric part.

Whether a collection has such a plane is measured, not assumed (:func:`detect_mirror_axis`): for the surface
samples ``P`` of some training objects (``pointcloud.npz``), split into halves ``A`` and ``B``, the mirror
distance ``mean_{a in A} min_{b in B} |R a - b|`` is compared with the sampling distance
``mean_{a in A} min_{b in B} |a - b|``; an axis is symmetric for an object when the first is below
``tolerance`` times the second.

Example:
    >>> import torch
    >>> from unrender.geometry.primitives import icosphere_arrays
    >>> verts = torch.tensor(icosphere_arrays(2)[0], dtype=torch.float32)
    >>> perm = mirror_permutation(verts, "x")
    >>> v = symmetrize(verts[None] + torch.rand(1, len(verts), 3), perm, "x")
    >>> bool(torch.allclose(v[0, perm] * torch.tensor([-1.0, 1.0, 1.0]), v[0], atol=1e-6))
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

AXES = ("x", "y", "z")
SYMMETRY_CHOICES = ("auto", "none") + AXES


def _mirror_sign(axis: str, like: torch.Tensor) -> torch.Tensor:
    sign = torch.ones(3, dtype=like.dtype, device=like.device)
    sign[AXES.index(axis)] = -1.0
    return sign


def mirror_permutation(vertices: torch.Tensor, axis: str, tol: float = 1e-5) -> torch.Tensor:
    """Index ``p[V]`` with ``vertices[p[i]] = mirror(vertices[i])`` about the plane ``axis = 0``.

    Args:
        vertices: ``[V,3]`` template positions (mirror symmetric about that plane).
        axis: ``"x"``, ``"y"`` or ``"z"``.
        tol: largest distance between a mirrored vertex and its partner.
    Raises:
        InputError: the vertex set is not symmetric about the plane.

    Example:
        >>> v = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
        >>> mirror_permutation(v, "x").tolist()
        [1, 0, 2]
    """
    if axis not in AXES:
        raise InputError(f"mirror axis must be one of {', '.join(AXES)}; got {axis!r}.")
    mirrored = vertices * _mirror_sign(axis, vertices)
    dist, perm = torch.cdist(mirrored.double(), vertices.double()).min(1)
    if dist.numel() and float(dist.max()) > tol:
        raise InputError(f"the template is not mirror symmetric about {axis} = 0 (a vertex is {float(dist.max()):.3g} "
                         f"from its mirror image); use symmetry=none.")
    return perm


def symmetrize(vertices: torch.Tensor, perm: torch.Tensor, axis: str) -> torch.Tensor:
    """``(v + R v[:, perm]) / 2`` for ``vertices[B,V,3]`` (module docstring); differentiable.

    Example:
        >>> v = torch.tensor([[[1.0, 0, 0], [-0.5, 0, 0]]])
        >>> symmetrize(v, torch.tensor([1, 0]), "x").tolist()
        [[[0.75, 0.0, 0.0], [-0.75, 0.0, 0.0]]]
    """
    return 0.5 * (vertices + vertices[:, perm] * _mirror_sign(axis, vertices))


def _mean_nn(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean())


def mirror_scores(points: np.ndarray, rng: np.random.Generator, max_points: int = 4000) -> dict[str, float]:
    """Mirror distance over sampling distance for each axis (module docstring) of one object's ``points[P,3]``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> p = rng.normal(size=(3000, 3)) * [0.1, 0.3, 0.2] + [0.0, 0.2, 0.0]
        >>> s = mirror_scores(p, rng)
        >>> s["x"] < 1.5, s["y"] > 3
        (True, True)
    """
    p = np.asarray(points, dtype=np.float64)
    if len(p) > max_points:
        p = p[rng.choice(len(p), max_points, replace=False)]
    order = rng.permutation(len(p))
    a, b = p[order[: len(p) // 2]], p[order[len(p) // 2:]]
    base = max(_mean_nn(a, b), 1e-12)
    out = {}
    for k, axis in enumerate(AXES):
        m = a.copy()
        m[:, k] *= -1.0
        out[axis] = _mean_nn(m, b) / base
    return out


def detect_mirror_axis(root, split: str = "train", max_objects: int = 24, tolerance: float = 1.5,
                       share: float = 0.9, seed: int = 0) -> str:
    """The axis whose plane through the origin mirrors at least ``share`` of the sampled objects, or ``"none"``.

    Objects are drawn evenly from every category of ``split`` (at most ``max_objects``); an object counts for an
    axis when its :func:`mirror_scores` value is below ``tolerance``. Objects without ``pointcloud.npz`` are
    skipped; with none left the answer is ``"none"``. The axis with the most symmetric objects wins.

    Example:
        >>> detect_mirror_axis("coll")        # doctest: +SKIP
        'x'
    """
    from ..data.collection import read_collection_index

    index = read_collection_index(root)
    objects = index.objects(split)
    rng = np.random.default_rng(seed)
    per_category = max(1, max_objects // max(len(index.categories), 1))
    chosen = [o for c in index.categories for o in [p for p in objects if p[0] == c][:per_category]]
    votes = {axis: 0 for axis in AXES}
    counted = 0
    for cat, model in chosen:
        path = Path(index.model_dir(cat, model)) / "pointcloud.npz"
        try:
            with np.load(path) as data:
                points = np.asarray(data["points"], dtype=np.float64)
        except (OSError, KeyError, ValueError):
            continue
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 100:
            continue
        counted += 1
        for axis, score in mirror_scores(points, rng).items():
            votes[axis] += score < tolerance
    if counted == 0:
        return "none"
    axis = max(AXES, key=lambda a: votes[a])
    return axis if votes[axis] >= share * counted else "none"
