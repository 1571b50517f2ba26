"""Texture atlases with xatlas, keeping the mesh's own vertices and faces.

xatlas cuts the surface into charts, flattens each (LSCM or planar projection) and packs them
into one atlas. Its output duplicates positions along seams; here only its texture coordinates
are kept, indexed separately (``uv_faces``), so the geometry stays exactly as given (a watertight
mesh stays watertight, vertex indices keep their meaning).

Conventions (checked by the tests):

* xatlas keeps the input's face order, and corner ``k`` of output face ``f`` is corner ``k`` of
  input face ``f``; :func:`unwrap_uv` verifies this on every call (and re-aligns rotated corners).
* Texture coordinates are xatlas's texel positions divided by the atlas size, ``(u, v) =
  (x / width, y / height)``, used as OpenGL uvs (v up, origin at the bottom-left of the image file)
  without a flip. With ``fix_winding`` on and chart rotation off, every chart has positive signed uv
  area: counter-clockwise (front) faces stay counter-clockwise in uv with v up, so charts are never
  mirrored and the tangent frame ``(t, n x t, n)`` that :func:`unrender.render.shading.perturb_normal`
  uses agrees with the MikkTSpace-style frames of Blender and three.js. (xatlas's chart rotation
  swaps x and y, i.e. mirrors, which is why it is off.)
* The atlas xatlas packs for a requested ``resolution`` is usually not square (e.g. 1523 x 917 for
  1024); the uvs are stretched to fill [0,1]^2 (as nvdiffrec does), so texel density differs by that
  aspect ratio between u and v, and chart gaps at ``resolution`` are at least
  ``padding * resolution / max(width, height)`` texels.

Example:
    >>> from unrender.geometry.primitives import torus
    >>> m = unwrap_uv(torus(0.4, 0.1, 24, 8), resolution=256)
    >>> m.uv_faces.shape == m.faces.shape, bool(m.uvs.min() >= 0 and m.uvs.max() <= 1)
    (True, True)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh


def _xatlas():
    try:
        import xatlas
    except ImportError as exc:  # pragma: no cover - xatlas is a dependency
        raise InputError("unwrap_uv needs the 'xatlas' package; install it with `pip install xatlas`.") from exc
    return xatlas


def _align_corners(vmapping: np.ndarray, indices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Return ``indices[F,3]`` with each row rotated so that ``vmapping[row] == faces[f]``.

    xatlas keeps corner order today; this guards against a version that starts a face at another
    corner. Any other mismatch (reordered or dropped faces) is refused.
    """
    if indices.shape != faces.shape:
        raise InputError(f"xatlas returned {indices.shape[0]} faces for {faces.shape[0]}; the mesh may have "
                         f"invalid faces, remove degenerate or duplicate faces and retry.")
    out = indices.copy()
    done = np.all(vmapping[indices] == faces, axis=1)
    for shift in (1, 2):
        rolled = np.roll(indices, shift, axis=1)
        hit = ~done & np.all(vmapping[rolled] == faces, axis=1)
        out[hit] = rolled[hit]
        done |= hit
    if not done.all():
        bad = int(np.flatnonzero(~done)[0])
        raise InputError(f"xatlas changed the face order (face {bad} maps to other vertices); "
                         f"this xatlas version is unsupported, install the one in the project's requirements.")
    return out


def unwrap_uv(mesh: Mesh, resolution: int = 1024, padding: int = 4) -> Mesh:
    """Compute a texture atlas for ``mesh`` with xatlas; positions and faces are returned unchanged.

    Algorithm: xatlas ``ComputeCharts`` (``fix_winding``) then ``PackCharts`` (``resolution``,
    ``padding`` texels between charts, bilinear margins, no chart rotation so no mirroring); the
    texel positions of the packed corners are divided by the atlas width/height. The result is
    deterministic for the same input (xatlas's packer uses a fixed seed).

    Args:
        mesh: :class:`Mesh` with ``vertices[V,3]`` and ``faces[F,3]``, F >= 1.
        resolution: texture side the atlas is packed for (texels per side, >= 16).
        padding: texels left between charts at that resolution (>= 0).
    Returns:
        a new :class:`Mesh` with the same ``vertices`` and ``faces`` (the same tensors), ``uvs[T,2]``
        in [0,1] (vertices' dtype and device; OpenGL convention, v up) and ``uv_faces[F,3]`` in face order.
        Normals and vertex colours are kept; material textures are dropped (they belonged to the old
        uvs, bake again) while the constant material factors are kept.

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> m = unwrap_uv(icosphere(2), resolution=256)
        >>> m.uvs.shape[0] > m.vertices.shape[0]   # seams get extra uv vertices, not extra positions
        True
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be an unrender.mesh.Mesh; got {type(mesh).__name__}.")
    if mesh.num_faces == 0 or mesh.num_vertices == 0:
        raise InputError("unwrap_uv got an empty mesh (no faces); give a triangle mesh with at least one face.")
    if not torch.isfinite(mesh.vertices).all():
        raise InputError("unwrap_uv got NaN or infinite vertex positions; repair the mesh first.")
    if int(resolution) < 16 or int(padding) < 0:
        raise InputError(f"resolution must be >= 16 and padding >= 0; got {resolution} and {padding}.")
    xatlas = _xatlas()
    positions = mesh.vertices.detach().to("cpu", torch.float32).numpy()
    faces = mesh.faces.cpu().numpy()
    chart_options = xatlas.ChartOptions()
    chart_options.fix_winding = True
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(resolution)
    pack_options.padding = int(padding)
    pack_options.bilinear = True
    pack_options.rotate_charts = False  # xatlas "rotates" by swapping x and y: a mirror
    atlas = xatlas.Atlas()
    atlas.add_mesh(positions, faces.astype(np.uint32))
    atlas.generate(chart_options, pack_options)
    if atlas.atlas_count != 1:  # only happens with a fixed texels_per_unit, which is never set here
        raise InputError(f"xatlas packed {atlas.atlas_count} atlases instead of one; lower the resolution.")
    vmapping, indices, uvs = atlas.get_mesh(0)
    uv_faces = _align_corners(vmapping.astype(np.int64), indices.astype(np.int64), faces)
    uvs = np.clip(uvs.astype(np.float64), 0.0, 1.0)
    material = mesh.material
    if material is not None:
        material = replace(material, base_color=None, orm=None, normal=None)
    dev, dt = mesh.vertices.device, mesh.vertices.dtype
    return Mesh(vertices=mesh.vertices, faces=mesh.faces, uvs=torch.tensor(uvs, dtype=dt, device=dev),
                uv_faces=torch.tensor(uv_faces, device=dev), normals=mesh.normals, vertex_colors=mesh.vertex_colors,
                material=material)


def uv_signed_areas(mesh: Mesh) -> torch.Tensor:
    """Signed uv area of every face ``[F]``: ``((t1 - t0) x (t2 - t0)) / 2``, positive when not mirrored.

    Example:
        >>> from unrender.geometry.primitives import box
        >>> bool((uv_signed_areas(box()) > 0).all())
        True
    """
    if mesh.uvs is None:
        raise InputError("uv_signed_areas needs a mesh with uvs; unwrap it first.")
    t = mesh.uvs[mesh.uv_faces]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


__all__ = ["unwrap_uv", "uv_signed_areas"]
