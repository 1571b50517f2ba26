"""Triangle-budget simplification by quadric edge collapse (``fast_simplification``).

In the reconstruction pipeline this runs *before* :func:`unrender.geometry.uv_unwrap.unwrap_uv`:
the triangle budget never has to preserve texture coordinates because the atlas is made for the
simplified mesh. A mesh that already has uvs is re-unwrapped after simplification (see
:func:`simplify_mesh`).

Example:
    >>> from unrender.geometry.primitives import icosphere
    >>> simplify_mesh(icosphere(3), 400).num_faces <= 400
    True
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh


def is_closed(faces: torch.Tensor) -> bool:
    """True when every undirected edge of ``faces[F,3]`` is shared by exactly two faces (watertight).

    Example:
        >>> is_closed(torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
        True
    """
    if faces.shape[0] == 0:
        return False
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    return bool((counts == 2).all())


def _compact(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faces with a repeated vertex and vertices no face uses, keeping the order of both."""
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    faces = faces[ok]
    used = np.zeros(len(points), dtype=bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return points[used], remap[faces]


def _nearest_rows(src: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of the nearest ``src[N,3]`` point for every ``query[M,3]`` point."""
    from scipy.spatial import cKDTree

    return cKDTree(src).query(query)[1]


def simplify_mesh(mesh: Mesh, target_faces: int, aggressiveness: float = 7.0, uv_resolution: int = 1024) -> Mesh:
    """Reduce ``mesh`` to at most ``target_faces`` triangles by quadric error edge collapse.

    Algorithm (Garland & Heckbert 1997 as implemented by fast_simplification): every vertex carries
    the quadric ``Q = sum_planes p p^T`` of its incident face planes; edges are collapsed cheapest
    first, the merged vertex placed where ``v^T Q v`` is smallest, until the face count reaches the
    target. Faces that collapse to a line and unused vertices are removed afterwards.

    Closed inputs normally stay closed (each edge in two faces); when the library could not keep a
    closed mesh closed, a warning says so. The input is returned unchanged when it already has
    ``<= target_faces`` faces. Attributes of the old vertices are carried over as follows: normals
    are dropped (recomputed from the new faces when needed), vertex colours are copied from the
    nearest old vertex, and if the mesh had uvs it is **re-unwrapped** with
    :func:`unrender.geometry.uv_unwrap.unwrap_uv` at ``uv_resolution`` (texture images of the old
    atlas are dropped; bake them again onto the new atlas).

    Args:
        mesh: :class:`Mesh` with ``vertices[V,3]``, ``faces[F,3]``.
        target_faces: triangle budget (>= 4).
        aggressiveness: fast_simplification's ``agg`` (higher = faster, lower quality).
        uv_resolution: atlas resolution for the re-unwrap of meshes that had uvs.
    Returns:
        a new :class:`Mesh` (vertices in the input's dtype and device, ``faces[F',3]`` with ``F' <= target``).

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> m = simplify_mesh(icosphere(4), 1000)
        >>> 800 <= m.num_faces <= 1000
        True
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be an unrender.mesh.Mesh; got {type(mesh).__name__}.")
    target = int(target_faces)
    if target < 4:
        raise InputError(f"target_faces must be at least 4; got {target_faces}.")
    if mesh.num_faces == 0:
        raise InputError("simplify_mesh got an empty mesh (no faces); give a triangle mesh with faces.")
    if mesh.num_faces <= target:
        return mesh
    import fast_simplification

    points = mesh.vertices.detach().to("cpu", torch.float64).numpy()
    faces = mesh.faces.cpu().numpy()
    new_points, new_faces = fast_simplification.simplify(points, faces, target_count=target, agg=aggressiveness)
    new_points, new_faces = _compact(np.asarray(new_points, dtype=np.float64), np.asarray(new_faces, dtype=np.int64))
    if new_faces.shape[0] == 0:
        raise InputError(f"simplifying to {target} faces collapsed the whole mesh; raise target_faces.")
    dev, dt = mesh.vertices.device, mesh.vertices.dtype
    # The old textures were painted for the old atlas: keep only the constant factors.
    material = None if mesh.material is None else replace(mesh.material, base_color=None, orm=None, normal=None)
    colors = None
    if mesh.vertex_colors is not None:
        colors = mesh.vertex_colors[torch.as_tensor(_nearest_rows(points, new_points), device=dev)]
    out = Mesh(vertices=torch.tensor(new_points, dtype=dt, device=dev), faces=torch.tensor(new_faces, device=dev),
               vertex_colors=colors, material=material)
    if is_closed(mesh.faces) and not is_closed(out.faces):
        warnings.warn(f"simplifying to {target} faces opened the closed mesh (some edges are no longer shared by "
                      f"exactly two faces); use a larger target_faces if watertightness matters.", stacklevel=2)
    if mesh.uvs is not None:
        from .uv_unwrap import unwrap_uv

        out = unwrap_uv(out, resolution=uv_resolution)
    return out
