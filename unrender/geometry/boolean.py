"""Boolean union of closed parts into one outer surface, keeping each part's uv atlas.

Objects built from overlapping primitives (a table's legs entering its top, a mug's handle entering
its body) are not one surface when the parts are merely stacked: the pieces of each part that lie
inside another stay in the mesh as *internal faces*. Nothing can see them, yet a ground-truth mesh
that keeps them puts points that no reconstruction can reach into Chamfer and F-score (8 % of a
procedural chair's surface samples were internal) and wrong normals into normal consistency.

:func:`union_parts` replaces the stack by the boundary of the union, computed exactly by the Manifold
library (``manifold3d``); new vertices on the intersection curves get uvs interpolated inside the
part they come from, so a texture painted on the stacked atlas still fits.
"""

from __future__ import annotations

import manifold3d as m3
import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh


def union_parts(mesh: Mesh, part_of_face) -> Mesh:
    """The outer surface of the union of the closed parts of ``mesh``.

    Args:
        mesh: vertices ``[V,3]``, faces ``[F,3]`` and optionally ``uvs [T,2]`` / ``uv_faces [F,3]``; every
            part must be closed and outward-facing (a seam in the uvs is fine, positions are welded).
        part_of_face: ``[F]`` integer part id of each face.

    Returns:
        A :class:`Mesh` whose surface is ``boundary(part_0 ∪ part_1 ∪ ...)``: closed, with no face inside
        another part; uvs (when given) carried over, interpolated on the new intersection vertices.
        Materials and vertex colours are dropped.

    Example:
        >>> from unrender.geometry.primitives import assemble, box, signed_volume
        >>> parts = [box((1.0, 0.2, 1.0)), box((0.2, 1.0, 0.2), center=(0.0, -0.4, 0.0))]
        >>> stacked = assemble(parts)
        >>> ids = torch.repeat_interleave(torch.arange(2), torch.tensor([p.num_faces for p in parts]))
        >>> u = union_parts(stacked, ids)
        >>> round(signed_volume(u.vertices.double().numpy(), u.faces.numpy()), 4)  # 0.2 + 0.04 - 0.2 ** 3
        0.232
    """
    faces = mesh.faces.cpu().numpy()
    part_of_face = torch.as_tensor(part_of_face).cpu().numpy()
    if part_of_face.shape != (faces.shape[0],):
        raise InputError(f"part_of_face must have one id per face ({faces.shape[0]}); got shape {part_of_face.shape}.")
    has_uv = mesh.uvs is not None
    vertices = mesh.vertices.detach().cpu().double().numpy()
    corner_uv = mesh.uv_faces.cpu().numpy() if has_uv else faces
    uvs = mesh.uvs.detach().cpu().double().numpy() if has_uv else np.zeros((vertices.shape[0], 2))
    manifolds = []
    for part in np.unique(part_of_face):
        sel = part_of_face == part
        # One Manifold vertex per (position, uv) pair; merge() welds equal positions across uv seams.
        corners = np.stack([faces[sel].reshape(-1), corner_uv[sel].reshape(-1)], 1)
        keys, inverse = np.unique(corners, axis=0, return_inverse=True)
        props = np.concatenate([vertices[keys[:, 0]], uvs[keys[:, 1]]], 1).astype(np.float32)
        m = m3.Mesh(vert_properties=props, tri_verts=inverse.reshape(-1, 3).astype(np.uint32))
        m.merge()
        solid = m3.Manifold(m)
        if solid.status() != m3.Error.NoError:
            raise InputError(f"part {int(part)} is not a closed, consistently oriented surface "
                             f"({solid.status()}); union_parts needs closed parts.")
        manifolds.append(solid)
    out = m3.Manifold.batch_boolean(manifolds, m3.OpType.Add).to_mesh()
    props = np.asarray(out.vert_properties, dtype=np.float64)
    tri = np.asarray(out.tri_verts, dtype=np.int64)
    weld = np.arange(props.shape[0])
    weld[np.asarray(out.merge_from_vert, dtype=np.int64)] = np.asarray(out.merge_to_vert, dtype=np.int64)
    used, welded = np.unique(weld[tri], return_inverse=True)
    return Mesh(vertices=torch.tensor(props[used, :3], dtype=torch.float32),
                faces=torch.tensor(welded.reshape(-1, 3)),
                uvs=torch.tensor(props[:, 3:5], dtype=torch.float32) if has_uv else None,
                uv_faces=torch.tensor(tri) if has_uv else None)
