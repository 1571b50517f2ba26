"""Feature tracks across instances: the same object point seen in several copies.

The pairwise matches of :mod:`.matching` give pixel pairs ``(instance i, u_i) <-> (instance j, u_j)``.
Positions of one instance closer than ``snap_px`` are the same feature (the rotated re-detections of a
keypoint land within a fraction of a pixel of it); the features linked by matches form the connected
components of a graph (union-find), and each component with at most one feature per instance is a track.
Components that hold two features of one instance are contradictory (a repeated texture matched twice)
and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .matching import PairMatch


@dataclass
class Tracks:
    """Observations of ``T`` tracks.

    Attributes:
        track: ``[M]`` track index of every observation.
        instance: ``[M]`` instance index of every observation.
        uv: ``[M,2]`` photo pixels (x right, y down).
        count: number of tracks ``T``.
    """

    track: np.ndarray
    instance: np.ndarray
    uv: np.ndarray
    count: int

    def of_instance(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(track ids[m], uv[m,2])`` of the tracks seen in instance ``k``."""
        sel = self.instance == k
        return self.track[sel], self.uv[sel]


def _features(points: np.ndarray, snap_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy grouping of ``points[M,2]`` within ``snap_px``: ``(feature id[M], feature position[F,2])``."""
    ids = -np.ones(points.shape[0], np.int64)
    tree = cKDTree(points)
    centres = []
    for a in range(points.shape[0]):
        if ids[a] >= 0:
            continue
        near = [b for b in tree.query_ball_point(points[a], snap_px) if ids[b] < 0]
        ids[near] = len(centres)
        centres.append(points[a])
    return ids, np.array(centres).reshape(-1, 2)


def build_tracks(pairs: list[PairMatch], num_instances: int, snap_px: float = 1.0) -> Tracks:
    """Tracks (module docstring) of ``pairs``; every kept track has observations in >= 2 distinct instances."""
    per_inst: list[list[np.ndarray]] = [[] for _ in range(num_instances)]
    for p in pairs:
        per_inst[p.i].append(p.points_i)
        per_inst[p.j].append(p.points_j)
    offset, node_of, node_pos, node_inst = 0, {}, [], []
    for k in range(num_instances):
        if not per_inst[k]:
            continue
        pts = np.concatenate(per_inst[k])
        ids, centres = _features(pts, snap_px)
        node_of[k] = (ids + offset, np.cumsum([0] + [len(a) for a in per_inst[k]]))
        node_pos.append(centres)
        node_inst.append(np.full(len(centres), k))
        offset += len(centres)
    if offset == 0:
        return Tracks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2)), 0)
    node_pos, node_inst = np.concatenate(node_pos), np.concatenate(node_inst)
    parent = np.arange(offset)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    cursor = {k: 0 for k in node_of}
    for p in pairs:
        ids_i, starts_i = node_of[p.i]
        ids_j, starts_j = node_of[p.j]
        a = ids_i[starts_i[cursor[p.i]]:starts_i[cursor[p.i] + 1]]
        b = ids_j[starts_j[cursor[p.j]]:starts_j[cursor[p.j] + 1]]
        cursor[p.i] += 1
        cursor[p.j] += 1
        for x, y in zip(a, b):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[rx] = ry
    roots = np.array([find(a) for a in range(offset)])
    track, instance, uv = [], [], []
    count = 0
    for r in np.unique(roots):
        members = np.nonzero(roots == r)[0]
        insts = node_inst[members]
        if len(members) < 2 or len(np.unique(insts)) != len(insts):
            continue
        track.extend([count] * len(members))
        instance.extend(insts.tolist())
        uv.append(node_pos[members])
        count += 1
    if count == 0:
        return Tracks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2)), 0)
    return Tracks(np.array(track), np.array(instance), np.concatenate(uv), count)
