"""glTF 2.0 binary (``.glb``) writer for :class:`~unrender.mesh.Mesh` with a PBR metallic-roughness material.

Written with ``json`` and ``struct`` so every texture slot is expressed exactly:
``baseColorTexture`` (sRGB PNG), ``metallicRoughnessTexture`` and ``occlusionTexture`` (one shared
linear PNG packed like nvdiffrec's ``ks``: R = occlusion, G = roughness, B = metallic, which is the
glTF packing), and ``normalTexture``. glTF texture coordinates have their origin at the *top-left*,
so ``v_gltf = 1 - v``; images are stored top row first, i.e. flipped from the texture tensors.
Positions are duplicated at uv seams because glTF indexes all attributes together. Loading goes
through trimesh (:func:`unrender.io.mesh_files.load_mesh`).

Example:
    >>> import torch, tempfile, os
    >>> from unrender.mesh import Mesh
    >>> m = Mesh(torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]))
    >>> write_glb(m, os.path.join(tempfile.mkdtemp(), "tri.glb")).suffix
    '.glb'
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh, PBRMaterial
from .images import png_bytes

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


class _Builder:
    """Accumulates bufferViews/accessors into one 4-byte aligned binary chunk."""

    def __init__(self):
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        v = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.blob.extend(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, a: np.ndarray, kind: str, target: int, minmax: bool = False) -> int:
        comp = _UINT if a.dtype == np.uint32 else _FLOAT
        acc = {"bufferView": self.view(np.ascontiguousarray(a).tobytes(), target), "componentType": comp,
               "count": int(a.shape[0]), "type": kind}
        if minmax:
            acc["min"] = [float(x) for x in a.min(axis=0).reshape(-1)]
            acc["max"] = [float(x) for x in a.max(axis=0).reshape(-1)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def write_glb(mesh: Mesh, path) -> Path:
    """Write ``mesh`` (``vertices[V,3]``, ``faces[F,3]``, optional ``uvs[T,2]``/``uv_faces[F,3]``,
    ``vertex_colors[V,3]`` and :class:`PBRMaterial`) as a glTF 2.0 binary file; returns the path.

    Attributes written: POSITION, NORMAL (``mesh.vertex_normals()``), TEXCOORD_0 (``(u, 1 - v)``) when
    uvs exist, COLOR_0 (linear) when vertex colours exist. Constant factors go to ``baseColorFactor``
    (linear), ``roughnessFactor`` and ``metallicFactor``; with an ORM texture both factors are 1.
    Output bytes are deterministic.

    Example:
        >>> write_glb(mesh, "out/model.glb")  # doctest: +SKIP
        PosixPath('out/model.glb')
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be an unrender.mesh.Mesh; got {type(mesh).__name__}.")
    from .mesh_files import split_seams, texture_to_file_image

    ids, faces, uv = split_seams(mesh)
    b = _Builder()
    pos = mesh.vertices.detach().cpu().float().numpy()[ids].astype(np.float32)
    nrm = mesh.vertex_normals().detach().cpu().float().numpy()[ids].astype(np.float32)
    attributes = {"POSITION": b.accessor(pos, "VEC3", _ARRAY_BUFFER, minmax=True),
                  "NORMAL": b.accessor(nrm, "VEC3", _ARRAY_BUFFER)}
    if uv is not None:
        tc = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)
        attributes["TEXCOORD_0"] = b.accessor(tc, "VEC2", _ARRAY_BUFFER)
    if mesh.vertex_colors is not None:
        col = mesh.vertex_colors.detach().cpu().float().numpy()[ids].clip(0, 1).astype(np.float32)
        attributes["COLOR_0"] = b.accessor(col, "VEC3", _ARRAY_BUFFER)
    indices = b.accessor(faces.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER, minmax=True)

    mat = mesh.material if mesh.material is not None else PBRMaterial()
    images, textures = [], []

    def add_texture(tex: torch.Tensor, kind: str) -> int:
        data = png_bytes(texture_to_file_image(tex, kind))
        images.append({"bufferView": b.view(data), "mimeType": "image/png"})
        textures.append({"sampler": 0, "source": len(images) - 1})
        return len(textures) - 1

    pbr: dict = {}
    if mat.base_color is not None and uv is not None:
        pbr["baseColorTexture"] = {"index": add_texture(mat.base_color, "base_color")}
        pbr["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
    else:
        f = torch.as_tensor(mat.base_color_factor, dtype=torch.float32).detach().cpu().reshape(-1)[:3]
        pbr["baseColorFactor"] = [float(x) for x in f.clamp(0, 1).tolist()] + [1.0]
    gmat: dict = {"name": "material", "pbrMetallicRoughness": pbr, "doubleSided": False}
    if mat.orm is not None and uv is not None:
        ti = add_texture(mat.orm, "orm")
        pbr["metallicRoughnessTexture"] = {"index": ti}
        pbr["metallicFactor"], pbr["roughnessFactor"] = 1.0, 1.0
        gmat["occlusionTexture"] = {"index": ti}
    else:
        pbr["metallicFactor"] = float(mat.metallic_factor)
        pbr["roughnessFactor"] = float(mat.roughness_factor)
    if mat.normal is not None and uv is not None:
        gmat["normalTexture"] = {"index": add_texture(mat.normal, "normal")}
    if mat.base_color is not None and mat.base_color.shape[-1] == 4:
        gmat["alphaMode"] = "BLEND"

    gltf: dict = {
        "asset": {"version": "2.0", "generator": "unrender"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "mesh"}],
        "meshes": [{"name": "mesh", "primitives": [{"attributes": attributes, "indices": indices,
                                                   "material": 0, "mode": 4}]}],
        "materials": [gmat],
        "accessors": b.accessors,
        "bufferViews": b.views,
    }
    if textures:
        gltf["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 10497, "wrapT": 10497}]
        gltf["images"] = images
        gltf["textures"] = textures
    while len(b.blob) % 4:
        b.blob.append(0)
    gltf["buffers"] = [{"byteLength": len(b.blob)}]
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((4 - len(js) % 4) % 4)
    body = (struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(b.blob), b"BIN\x00")
            + bytes(b.blob))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return p
