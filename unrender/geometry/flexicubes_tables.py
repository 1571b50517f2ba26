"""Cube topology and the Dual Marching Cubes case tables used by FlexiCubes, generated at import time.

A cube of the grid has 8 corners, 12 edges and 6 faces, numbered here once for the whole package:

* corner ``k`` sits at offset ``((k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1)`` (x, y, z) from the cube's lowest
  corner;
* edge ``4 a + db + 2 dc`` runs along axis ``a`` from the corner with offsets ``(0, db, dc)`` on the axes
  ``(a, b, c) = (a, a+1, a+2) mod 3`` to the corner one step further along ``a``;
* face ``2 a + s`` is the side ``offset_a == s``.

The *case* of a cube is ``sum_k 2^k [s_k < 0]`` (``s = 0`` counts as outside, as in DMTet).

Dual Marching Cubes puts one dual vertex on each surface *patch* inside a cube. The patches are found the
way marching cubes would draw them: on every face, the surface crosses the face in segments joining the
face's sign-changing edges; chaining segments over all six faces closes loops around the cube, and the
crossed edges on one loop form one patch. A face with two crossed edges has one segment. A face whose
corners alternate in sign (an *ambiguous* face, four crossed edges) has two, and the table must decide
which pairs of edges they join. Convention 0 (the default) cuts each *inside* corner off by itself, so
inside corners on a face diagonal are never connected through the face; convention 1 cuts off the outside
corners. Both cubes sharing a face use the same rule on it, which is what makes every mesh edge shared by
exactly two quads.

One situation breaks that: a patch whose loop passes through *both* segments of an ambiguous face (the
inside corners of the face are joined around the back of the cube). If the neighbour across that face is
in the same situation, the four quads of the face's crossed edges would all meet at one mesh edge. The
table records the face as ``merged_face[case]``; the enumeration below shows that such a cube has no other
ambiguous face and that convention 1 splits the merged face into two patches, so switching just one cube
of such a pair to convention 1 restores a 2-manifold edge without disturbing any other neighbour (the
other cube still joins all four edges, so both pairings are compatible with it). The import-time checks
below raise if either property failed.

Example:
    >>> DUAL_MC.num_patches[0][0b00000001], DUAL_MC.patch_of_edge[0][0b00000001]
    (1, (0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1))
"""

from __future__ import annotations

from dataclasses import dataclass

CORNER_OFFSETS = tuple(((k >> 0) & 1, (k >> 1) & 1, (k >> 2) & 1) for k in range(8))


def _corner_at(offset) -> int:
    return offset[0] + 2 * offset[1] + 4 * offset[2]


def _cube_edges() -> tuple:
    """``(corner_low, corner_high)`` of the 12 cube edges in the order of the module docstring."""
    edges = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        for code in range(4):
            low = [0, 0, 0]
            low[b], low[c] = code & 1, code >> 1
            high = list(low)
            high[a] = 1
            edges.append((_corner_at(low), _corner_at(high)))
    return tuple(edges)


CUBE_EDGES = _cube_edges()
EDGE_AXIS = tuple(e // 4 for e in range(12))


def _cube_faces() -> tuple:
    """Per face ``2 a + s``: its 4 corners in cyclic order and the 4 edges ``(q_i, q_{i+1})`` between them."""
    edge_of = {frozenset(e): i for i, e in enumerate(CUBE_EDGES)}
    faces = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        for s in (0, 1):
            cycle = []
            for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1)):
                o = [0, 0, 0]
                o[a], o[b], o[c] = s, db, dc
                cycle.append(_corner_at(o))
            face_edges = tuple(edge_of[frozenset((cycle[i], cycle[(i + 1) % 4]))] for i in range(4))
            faces.append((tuple(cycle), face_edges))
    return tuple(faces)


CUBE_FACES = _cube_faces()


@dataclass(frozen=True)
class DualMCTables:
    """Dual Marching Cubes tables (immutable nested tuples; turn them into tensors where needed).

    Attributes:
        patch_of_edge: ``[2][256][12]``: for convention ``k`` (0 = inside corners separated on ambiguous
            faces, 1 = outside corners separated) and case, the patch (dual vertex ``0..3`` of the cube)
            that each crossed edge belongs to, ``-1`` for edges that do not cross. Patches are numbered in
            the order of their lowest edge.
        num_patches: ``[2][256]`` number of patches (dual vertices) of each case, 0 to 4.
        merged_face: ``[256]`` the face whose four crossed edges convention 0 joins into one patch, or -1.
    """

    patch_of_edge: tuple
    num_patches: tuple
    merged_face: tuple


def _find(parent: list, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _patches(case: int, separate_inside: bool) -> tuple[tuple, int, list, list]:
    """Group the crossed edges of ``case`` into patches by chaining face segments (union-find).

    Returns ``(patch_of_edge [12], number of patches, faces whose 4 crossed edges ended in one patch,
    ambiguous faces)``.
    """
    inside = [(case >> k) & 1 == 1 for k in range(8)]
    crossed = [inside[p] != inside[q] for p, q in CUBE_EDGES]
    parent = list(range(12))

    def union(i, j):
        parent[_find(parent, i)] = _find(parent, j)

    ambiguous = []
    for f, (cycle, face_edges) in enumerate(CUBE_FACES):
        hit = [e for e in face_edges if crossed[e]]
        if len(hit) == 2:
            union(*hit)
        elif len(hit) == 4:
            ambiguous.append(f)
            for i in range(4):  # corner q_i touches face edges i-1 and i
                if inside[cycle[i]] == separate_inside:
                    union(face_edges[i - 1], face_edges[i])
    roots, patch = {}, [-1] * 12
    for e in range(12):
        if crossed[e]:
            patch[e] = roots.setdefault(_find(parent, e), len(roots))
    merged = [f for f in ambiguous if len({patch[e] for e in CUBE_FACES[f][1]}) == 1]
    return tuple(patch), len(roots), merged, ambiguous


def _build_tables() -> DualMCTables:
    """Enumerate all 256 cases under both conventions and check the properties the extractor relies on."""
    patch_of_edge, num_patches, merged_face = [[], []], [[], []], []
    for case in range(256):
        for convention in (0, 1):
            patch, count, merged, ambiguous = _patches(case, separate_inside=convention == 0)
            patch_of_edge[convention].append(patch)
            num_patches[convention].append(count)
            if convention == 0:
                if len(merged) > 1 or (merged and ambiguous != merged):
                    raise RuntimeError(f"Dual MC case {case}: a merged face must be the only ambiguous face.")
                merged_face.append(merged[0] if merged else -1)
            elif merged_face[case] >= 0 and merged_face[case] in merged:
                raise RuntimeError(f"Dual MC case {case}: convention 1 must split the merged face.")
    return DualMCTables(tuple(map(tuple, patch_of_edge)), tuple(map(tuple, num_patches)), tuple(merged_face))


DUAL_MC = _build_tables()
