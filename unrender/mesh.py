"""Triangle meshes and PBR materials as plain data.

A :class:`Mesh` is a dataclass of tensors with documented shapes. Attributes are indexed
separately (as in OBJ): positions by ``faces[F,3]`` and texture coordinates by
``uv_faces[F,3]``, so seams need no duplicated vertices. Loading and saving live in
:mod:`unrender.io.mesh_files`.

Example:
    >>> import torch
    >>> m = Mesh(vertices=torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0]]), faces=torch.tensor([[0, 1, 2]]))
    >>> m.vertex_normals()[0].tolist()
    [0.0, 0.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .checks import float_tensor, index_tensor
from .errors import InputError


@dataclass
class PBRMaterial:
    """glTF metallic-roughness material, textures in linear space except ``base_color``.

    Attributes:
        base_color: albedo texture ``[H,W,3]`` (or ``[H,W,4]`` with alpha), *linear* RGB in [0,1].
        orm: occlusion-roughness-metallic texture ``[H,W,3]`` packed as nvdiffrec's ``ks``
            (R = ambient occlusion, G = roughness, B = metallic); ``None`` means constant factors.
        normal: tangent-space normal map ``[H,W,3]`` with components in [-1,1] (not [0,1]); ``None`` = flat.
        base_color_factor: RGB multiplier ``[3]`` used when ``base_color`` is ``None``.
        roughness_factor, metallic_factor: scalars used when ``orm`` is ``None``.
    """

    base_color: torch.Tensor | None = None
    orm: torch.Tensor | None = None
    normal: torch.Tensor | None = None
    base_color_factor: torch.Tensor = field(default_factory=lambda: torch.tensor([0.8, 0.8, 0.8]))
    roughness_factor: float = 0.5
    metallic_factor: float = 0.0

    def to(self, device=None, dtype=None) -> PBRMaterial:
        f = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        return replace(self, base_color=f(self.base_color), orm=f(self.orm), normal=f(self.normal),
                       base_color_factor=f(self.base_color_factor))


@dataclass
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: positions ``[V,3]``.
        faces: position indices ``[F,3]`` (int64), counter-clockwise = front.
        uvs: texture coordinates ``[T,2]``, origin at the *bottom-left* of the texture (OBJ/OpenGL).
        uv_faces: texture-coordinate indices ``[F,3]``; defaults to ``faces`` when ``uvs`` has V rows.
        normals: per-vertex normals ``[V,3]``; computed (area-weighted) when absent.
        vertex_colors: per-vertex linear RGB ``[V,3]``, optional.
        material: optional :class:`PBRMaterial`.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    vertex_colors: torch.Tensor | None = None
    material: PBRMaterial | None = None

    def __post_init__(self):
        self.vertices = float_tensor("vertices", self.vertices, "[V,3]", last_dim=3, ndims=(2,))
        self.faces = index_tensor("faces", self.faces, "[F,3]", last_dim=3, num_vertices=self.vertices.shape[0],
                                  device=self.vertices.device)
        if self.uvs is not None:
            self.uvs = float_tensor("uvs", self.uvs, "[T,2]", last_dim=2, ndims=(2,))
            if self.uv_faces is None:
                if self.uvs.shape[0] != self.vertices.shape[0]:
                    raise InputError("uvs has a different row count than vertices, so uv_faces [F,3] is required.")
                self.uv_faces = self.faces
            self.uv_faces = index_tensor("uv_faces", self.uv_faces, "[F,3]", last_dim=3,
                                         num_vertices=self.uvs.shape[0], device=self.vertices.device)
            if self.uv_faces.shape[0] != self.faces.shape[0]:
                raise InputError(f"uv_faces has {self.uv_faces.shape[0]} rows but faces has {self.faces.shape[0]}.")
        if self.normals is not None:
            self.normals = float_tensor("normals", self.normals, "[V,3]", last_dim=3, ndims=(2,))
            if self.normals.shape[0] != self.vertices.shape[0]:
                raise InputError("normals must have one row per vertex ([V,3]).")
        if self.vertex_colors is not None:
            self.vertex_colors = float_tensor("vertex_colors", self.vertex_colors, "[V,3]", ndims=(2,))[:, :3]

    def validate(self, source: str = "mesh") -> Mesh:
        """Raise naming ``source`` if the mesh cannot be rendered (no faces, NaN vertices)."""
        if self.faces.shape[0] == 0:
            raise InputError(f"{source} has no faces; give a triangle mesh with at least one face.")
        if not torch.isfinite(self.vertices).all():
            raise InputError(f"{source} has NaN or infinite vertex positions; repair or re-export the mesh.")
        return self

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def to(self, device=None, dtype=None) -> Mesh:
        f = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        i = lambda t: None if t is None else t.to(device=device)  # noqa: E731
        return replace(self, vertices=f(self.vertices), faces=i(self.faces), uvs=f(self.uvs),
                       uv_faces=i(self.uv_faces), normals=f(self.normals), vertex_colors=f(self.vertex_colors),
                       material=None if self.material is None else self.material.to(device, dtype))

    def face_normals(self, normalized: bool = True) -> torch.Tensor:
        """Face normals ``[F,3]`` (unnormalised = twice the area times the unit normal)."""
        v = self.vertices[self.faces]
        n = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
        return torch.nn.functional.normalize(n, dim=-1) if normalized else n

    def vertex_normals(self) -> torch.Tensor:
        """Per-vertex normals ``[V,3]``: the stored ones, or area-weighted face normals."""
        if self.normals is not None:
            return self.normals
        return vertex_normals(self.vertices, self.faces)

    def tangents(self) -> torch.Tensor:
        """Per-vertex tangents ``[V,3]`` along +u of the texture, orthogonal to the vertex normals.

        Requires ``uvs``. Each face contributes ``T = (dP1 dv2 - dP2 dv1) / (du1 dv2 - du2 dv1)`` to its
        three vertices; the sum is Gram-Schmidt orthogonalised against the normal.
        """
        if self.uvs is None:
            raise InputError("tangents need texture coordinates (uvs); unwrap the mesh first.")
        return vertex_tangents(self.vertices, self.faces, self.uvs, self.uv_faces, self.vertex_normals())


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals ``[V,3]`` of ``vertices[V,3]``, ``faces[F,3]``; differentiable."""
    v = vertices[faces]
    fn = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    n = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    fallback = torch.tensor([0.0, 0.0, 1.0], dtype=n.dtype, device=n.device)
    n = torch.where(n.norm(dim=-1, keepdim=True) > 1e-20, n, fallback)
    return torch.nn.functional.normalize(n, dim=-1)


def vertex_tangents(vertices, faces, uvs, uv_faces, normals) -> torch.Tensor:
    """Per-vertex tangents ``[V,3]`` (see :meth:`Mesh.tangents`); differentiable in ``vertices``."""
    p = vertices[faces]
    t = uvs[uv_faces]
    dp1, dp2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    dt1, dt2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    den = dt1[:, 0] * dt2[:, 1] - dt2[:, 0] * dt1[:, 1]
    den = torch.where(den.abs() < 1e-12, torch.full_like(den, 1e-12), den)
    tan = (dp1 * dt2[:, 1:2] - dp2 * dt1[:, 1:2]) / den[:, None]
    acc = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), tan.repeat_interleave(3, dim=0))
    acc = acc - normals * (acc * normals).sum(-1, keepdim=True)
    # Vertices with no usable uv gradient get any vector orthogonal to the normal.
    helper = torch.where(normals[:, :1].abs() < 0.9, torch.tensor([1.0, 0, 0], dtype=acc.dtype, device=acc.device),
                         torch.tensor([0.0, 1, 0], dtype=acc.dtype, device=acc.device))
    ortho = torch.linalg.cross(normals, helper, dim=-1)
    acc = torch.where(acc.norm(dim=-1, keepdim=True) > 1e-12, acc, ortho)
    return torch.nn.functional.normalize(acc, dim=-1)
