"""Mesh files: OBJ (+MTL+textures), PLY and glTF/GLB in and out of :class:`~unrender.mesh.Mesh`.

OBJ is parsed here so that positions and texture coordinates keep their separate indices (no
vertex duplication at uv seams). PLY and glTF are read with trimesh; positions that a format had to
duplicate at seams are welded back, so a watertight surface stays watertight. GLB is written by
:mod:`unrender.io.gltf`.

Texture conventions (see docs/conventions.md): texture tensors have row 0 = the *bottom* row of the
image file, so images are flipped vertically on load and on save. The base colour is sRGB in files
and linear in tensors; the ORM texture (R = occlusion, G = roughness, B = metallic, as nvdiffrec's
``ks``) is linear data; normal maps are ``(n + 1) / 2`` in files and ``n`` in [-1,1] in tensors.
OBJ folders are written with nvdiffrec's names ``texture_kd.png``, ``texture_ks.png``, ``texture_n.png``.

Example:
    >>> import torch, tempfile, os
    >>> from unrender.mesh import Mesh
    >>> m = Mesh(torch.tensor([[0., 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
    ...          torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]))
    >>> d = tempfile.mkdtemp()
    >>> _ = save_mesh(m, os.path.join(d, "tet.obj"))
    >>> load_mesh(os.path.join(d, "tet.obj")).faces.shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..color import linear_to_srgb, srgb_to_linear
from ..errors import DataError, InputError
from ..mesh import Mesh, PBRMaterial
from .images import read_image, write_png

MESH_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf")


# --------------------------------------------------------------------------------------- colour


def texture_from_file_image(img: torch.Tensor, kind: str) -> torch.Tensor:
    """Convert a file image ``[H,W,C]`` (row 0 = top) into a texture tensor (row 0 = bottom).

    ``kind`` is ``"base_color"`` (sRGB -> linear on RGB, alpha kept), ``"orm"`` (linear, first 3
    channels) or ``"normal"`` ([0,1] -> [-1,1], first 3 channels).
    """
    img = torch.flip(img, dims=[0])
    if kind == "base_color":
        rgb = srgb_to_linear(img[..., :3])
        return torch.cat([rgb, img[..., 3:4]], dim=-1) if img.shape[-1] == 4 else rgb
    if kind == "orm":
        return img[..., :3].contiguous()
    return (img[..., :3] * 2.0 - 1.0).contiguous()


def texture_to_file_image(tex: torch.Tensor, kind: str) -> torch.Tensor:
    """Inverse of :func:`texture_from_file_image`: texture ``[H,W,C]`` to a file image in [0,1], row 0 = top."""
    tex = tex.detach().to("cpu", torch.float32)
    if kind == "base_color":
        rgb = linear_to_srgb(tex[..., :3].clamp(0.0, 1.0))
        img = torch.cat([rgb, tex[..., 3:4].clamp(0, 1)], dim=-1) if tex.shape[-1] == 4 else rgb
    elif kind == "orm":
        img = tex[..., :3].clamp(0.0, 1.0)
    else:
        img = (tex[..., :3] * 0.5 + 0.5).clamp(0.0, 1.0)
    return torch.flip(img, dims=[0])


# ------------------------------------------------------------------------------------------ entry


def load_mesh(path) -> Mesh:
    """Load an OBJ (+MTL and textures), PLY, GLB or glTF file as a :class:`Mesh`.

    Returns ``vertices[V,3]``, ``faces[F,3]`` (polygons fan-triangulated), ``uvs[T,2]`` with
    ``uv_faces[F,3]`` when the file has texture coordinates, per-vertex ``normals[V,3]`` when they are
    indexed like the positions, ``vertex_colors[V,3]`` (linear) for coloured PLYs, and a
    :class:`PBRMaterial` with linear textures (row 0 = bottom of the image file). An OBJ with several
    materials gets the one used by most faces. Refuses (:class:`DataError` naming the file) a missing
    file, an unknown extension, no faces, NaN/inf positions and out-of-range face indices.

    Example:
        >>> m = load_mesh("spot/spot.obj")            # doctest: +SKIP
        >>> m.vertices.shape, m.material.base_color.shape  # doctest: +SKIP
        (torch.Size([2930, 3]), torch.Size([1024, 1024, 3]))
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in MESH_EXTENSIONS:
        raise DataError(f"{p} has unsupported extension '{p.suffix}'; give a .obj, .ply, .glb or .gltf file.")
    if not p.is_file():
        raise DataError(f"Mesh file {p} does not exist; check the path.")
    if ext == ".obj":
        parts = _read_obj(p)
    else:
        parts = _read_with_trimesh(p)
    return _checked_mesh(p, **parts)


def save_mesh(mesh: Mesh, path) -> list[Path]:
    """Write ``mesh`` to ``path`` by extension and return the files written.

    * ``.obj``: OBJ + MTL (``bsdf pbr``; ``Ks = (0, roughness, metallic)`` as nvdiffrec) and, when the
      material has them, ``texture_kd.png`` (sRGB), ``texture_ks.png`` (ORM) and ``texture_n.png``
      next to it. Positions and uvs keep separate indices.
    * ``.ply``: binary PLY with positions, faces, and per-vertex normals, uvs (``s``, ``t``) and sRGB
      colours when present; positions are duplicated at uv seams because PLY has one index per corner.
    * ``.glb``: glTF 2.0 binary with a metallic-roughness material (see :mod:`unrender.io.gltf`).

    Parent folders are created; output bytes are deterministic.

    Example:
        >>> save_mesh(mesh, "out/mesh.obj")  # doctest: +SKIP
        [PosixPath('out/mesh.obj'), PosixPath('out/mesh.mtl'), PosixPath('out/texture_kd.png')]
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh must be an unrender.mesh.Mesh; got {type(mesh).__name__}.")
    p = Path(path)
    ext = p.suffix.lower()
    if mesh.faces.shape[0] == 0 or mesh.vertices.shape[0] == 0:
        # glTF accessors need at least one element and an empty OBJ opens as nothing: refuse before writing.
        raise InputError(f"{p}: the mesh has no triangles; nothing was written (check what produced it).")
    p.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".obj":
        return _write_obj(mesh, p)
    if ext == ".ply":
        return _write_ply(mesh, p)
    if ext == ".glb":
        from .gltf import write_glb

        return [write_glb(mesh, p)]
    raise DataError(f"Cannot save {p}: unsupported extension '{p.suffix}'; use .obj, .ply or .glb.")


def _checked_mesh(p: Path, vertices, faces, uvs=None, uv_faces=None, normals=None, vertex_colors=None,
                  material=None) -> Mesh:
    vertices = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if faces.shape[0] == 0:
        raise DataError(f"{p} contains no faces; give a triangle (or polygon) mesh, not a point cloud.")
    if not np.isfinite(vertices).all():
        raise DataError(f"{p} has NaN or infinite vertex positions; repair or re-export the mesh.")
    if faces.min() < 0 or faces.max() >= vertices.shape[0]:
        raise DataError(f"{p} has face indices outside [1, {vertices.shape[0]}] (the vertex count); "
                        f"the file is truncated or corrupt, re-export it.")
    if uvs is not None:
        uvs = np.asarray(uvs, dtype=np.float32).reshape(-1, 2)
        uv_faces = np.asarray(uv_faces, dtype=np.int64).reshape(-1, 3)
        if uvs.shape[0] == 0 or uv_faces.min() < 0 or uv_faces.max() >= uvs.shape[0]:
            raise DataError(f"{p} has texture-coordinate indices out of range; re-export the mesh with valid uvs.")
        if not np.isfinite(uvs).all():
            raise DataError(f"{p} has NaN texture coordinates; re-export the mesh with valid uvs.")
    t = lambda a, dt=torch.float32: None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa
    return Mesh(vertices=t(vertices), faces=t(faces, torch.int64), uvs=t(uvs),
                uv_faces=t(uv_faces, torch.int64), normals=t(normals), vertex_colors=t(vertex_colors),
                material=material)


# -------------------------------------------------------------------------------------------- OBJ


def _obj_index(tok: str, count: int, p: Path, lineno: int) -> int:
    try:
        i = int(tok)
    except ValueError:
        raise DataError(f"{p} line {lineno}: bad face index '{tok}'; fix or re-export the OBJ.") from None
    if i == 0:
        raise DataError(f"{p} line {lineno}: face index 0 is invalid (OBJ indices start at 1); re-export the OBJ.")
    return i - 1 if i > 0 else count + i


def _read_obj(p: Path) -> dict:
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"Mesh file {p} could not be read ({exc}); check its permissions.") from None
    v, vt, vn, vc = [], [], [], []
    fv, ft, fn, fmat = [], [], [], []
    mtllibs, current = [], None
    missing_vt = missing_vn = False
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key == "v":
                v.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:  # common extension: "v x y z r g b" (sRGB in [0,1])
                    vc.append([float(x) for x in parts[4:7]])
            elif key == "vt":
                vt.append([float(x) for x in parts[1:3]] + [0.0] * (2 - len(parts[1:3])))
            elif key == "vn":
                vn.append([float(x) for x in parts[1:4]])
            elif key == "f":
                ci, ti, ni = [], [], []
                for tok in parts[1:]:
                    s = tok.split("/")
                    ci.append(_obj_index(s[0], len(v), p, lineno))
                    if len(s) > 1 and s[1]:
                        ti.append(_obj_index(s[1], len(vt), p, lineno))
                    else:
                        ti.append(-1)
                        missing_vt = True
                    if len(s) > 2 and s[2]:
                        ni.append(_obj_index(s[2], len(vn), p, lineno))
                    else:
                        ni.append(-1)
                        missing_vn = True
                for k in range(1, len(ci) - 1):  # fan triangulation of polygons
                    fv.append((ci[0], ci[k], ci[k + 1]))
                    ft.append((ti[0], ti[k], ti[k + 1]))
                    fn.append((ni[0], ni[k], ni[k + 1]))
                    fmat.append(current)
            elif key == "mtllib":
                mtllibs.append(line.split(None, 1)[1].strip())
            elif key == "usemtl":
                current = line.split(None, 1)[1].strip() if len(parts) > 1 else None
        except (ValueError, IndexError):
            raise DataError(f"{p} line {lineno} is malformed ('{line.strip()[:60]}'); fix or re-export the OBJ.") \
                from None
    vertices = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(fv, dtype=np.int64).reshape(-1, 3)
    out = {"vertices": vertices, "faces": faces}
    if vc and len(vc) == len(v):
        out["vertex_colors"] = srgb_to_linear(torch.tensor(vc, dtype=torch.float32)).numpy()
    if vt and len(ft):
        uv_faces = np.asarray(ft, dtype=np.int64).reshape(-1, 3)
        uvs = np.asarray(vt, dtype=np.float64).reshape(-1, 2)
        if missing_vt:  # corners without a vt get a shared (0, 0)
            uvs = np.concatenate([uvs, np.zeros((1, 2))])
            uv_faces = np.where(uv_faces < 0, uvs.shape[0] - 1, uv_faces)
        out.update(uvs=uvs, uv_faces=uv_faces)
    if vn and not missing_vn and len(vn) == len(v):
        fnn = np.asarray(fn, dtype=np.int64).reshape(-1, 3)
        if np.array_equal(fnn, faces):  # normals indexed like positions become per-vertex normals
            out["normals"] = np.asarray(vn, dtype=np.float64)
    if mtllibs:
        used = [m for m in fmat if m is not None]
        name = max(set(used), key=used.count) if used else None
        out["material"] = _read_mtl(p, mtllibs, name)
    return out


def _map_filename(parts: list[str]) -> str:
    """File name of a ``map_*`` line, skipping options such as ``-bm 1.0`` or ``-s 1 1 1``."""
    numbers = {"-bm": (1, 1), "-boost": (1, 1), "-texres": (1, 1), "-mm": (2, 2), "-o": (1, 3), "-s": (1, 3),
               "-t": (1, 3)}
    words = {"-blendu", "-blendv", "-cc", "-clamp", "-imfchan", "-type"}
    i = 1
    while i < len(parts) - 1 and (parts[i] in numbers or parts[i] in words):
        opt = parts[i]
        i += 1
        if opt in words:
            i += 1
            continue
        lo, hi = numbers[opt]
        taken = 0
        while taken < hi and i < len(parts) - 1:
            try:
                float(parts[i])
            except ValueError:
                break
            i += 1
            taken += 1
    return " ".join(parts[i:])


def _read_mtl(obj_path: Path, mtllibs: list[str], name: str | None) -> PBRMaterial | None:
    mats: dict[str, dict] = {}
    found = False
    for lib in mtllibs:
        mp = obj_path.parent / lib
        if not mp.is_file():
            continue
        found = True
        cur = None
        for line in mp.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            key = parts[0].lower()
            if key == "newmtl":
                cur = mats.setdefault(line.split(None, 1)[1].strip() if len(parts) > 1 else "", {"_mtl": mp})
            elif cur is None:
                continue
            elif key in ("kd", "ks") and len(parts) >= 4:
                cur[key] = [float(x) for x in parts[1:4]]
            elif key in ("ns", "pr", "pm"):
                cur[key] = float(parts[1])
            elif key == "bsdf":
                cur["bsdf"] = parts[1].lower() if len(parts) > 1 else ""
            elif key in ("map_kd", "map_ks", "bump", "map_bump", "norm"):
                cur["bump" if key in ("map_bump", "norm") else key] = _map_filename(parts)
    if not found:
        warnings.warn(f"{obj_path} refers to material library {mtllibs[0]!r}, which is missing; "
                      f"loading the mesh without a material.", stacklevel=3)
        return None
    if not mats:
        return None
    m = mats.get(name) if name is not None else None
    if m is None:
        m = mats[next(iter(mats))]
    mtl_path = m["_mtl"]
    pbr = m.get("bsdf") == "pbr"
    mat = PBRMaterial()
    if "kd" in m:
        mat.base_color_factor = srgb_to_linear(torch.tensor(m["kd"], dtype=torch.float32))
    if pbr and "ks" in m:  # nvdiffrec's convention: Ks = (unused, roughness, metallic)
        mat.roughness_factor, mat.metallic_factor = float(m["ks"][1]), float(m["ks"][2])
    elif "ns" in m:  # Phong exponent to a Beckmann-like roughness
        mat.roughness_factor = float(min(1.0, (2.0 / (m["ns"] + 2.0)) ** 0.5))
    mat.roughness_factor = float(m.get("pr", mat.roughness_factor))
    mat.metallic_factor = float(m.get("pm", mat.metallic_factor))

    def tex(key, kind):
        fname = m.get(key)
        if not fname:
            return None
        tp = mtl_path.parent / fname
        if not tp.is_file():
            raise DataError(f"{mtl_path} refers to texture '{fname}', which is missing; put it next to the MTL "
                            f"or remove the line.")
        return texture_from_file_image(read_image(tp), kind)

    mat.base_color = tex("map_kd", "base_color")
    if pbr:
        mat.orm = tex("map_ks", "orm")
        if mat.orm is not None and bool((mat.orm[..., 0] == 0).all()):
            # nvdiffrec leaves the occlusion channel at 0 meaning "unused"; as occlusion it would be black.
            mat.orm[..., 0] = 1.0
    mat.normal = tex("bump", "normal")
    return mat


def _fmt_rows(prefix: str, a: np.ndarray) -> str:
    if a.shape[0] == 0:
        return ""
    fmt = prefix + " " + " ".join(["%.8g"] * a.shape[1])
    return "\n".join(fmt % tuple(r) for r in a.tolist()) + "\n"


def _write_obj(mesh: Mesh, p: Path) -> list[Path]:
    v = mesh.vertices.detach().cpu().double().numpy()
    f = mesh.faces.cpu().numpy() + 1
    written = [p]
    lines = ["# written by unrender\n"]
    mat = mesh.material
    mtl_path = p.with_suffix(".mtl")
    lines.append(f"mtllib {mtl_path.name}\n")
    if mesh.vertex_colors is not None:
        c = linear_to_srgb(mesh.vertex_colors.detach().cpu().float().clamp(0.0, 1.0)).double().numpy()
        lines.append(_fmt_rows("v", np.concatenate([v, c], axis=1)))
    else:
        lines.append(_fmt_rows("v", v))
    has_uv = mesh.uvs is not None
    has_n = mesh.normals is not None
    if has_uv:
        lines.append(_fmt_rows("vt", mesh.uvs.detach().cpu().double().numpy()))
    if has_n:
        lines.append(_fmt_rows("vn", mesh.normals.detach().cpu().double().numpy()))
    lines.append("usemtl defaultMat\n")
    if has_uv:
        ft = mesh.uv_faces.cpu().numpy() + 1
        corners = np.stack([f, ft] + ([f] if has_n else []), axis=-1)  # [F,3,k]
        fmt = "/".join(["%d"] * corners.shape[-1])
    elif has_n:
        corners = np.stack([f, f], axis=-1)
        fmt = "%d//%d"
    else:
        corners = f[..., None]
        fmt = "%d"
    face_fmt = "f " + " ".join([fmt] * 3)
    lines.append("\n".join(face_fmt % tuple(r) for r in corners.reshape(len(f), -1).tolist()) + "\n")
    p.write_text("".join(lines), encoding="utf-8")

    mat = mat if mat is not None else PBRMaterial()
    kd = linear_to_srgb(torch.as_tensor(mat.base_color_factor, dtype=torch.float32).detach().cpu()[:3].clamp(0.0, 1.0)).tolist()
    mtl = ["# written by unrender\n", "newmtl defaultMat\n", "bsdf pbr\n",
           "Kd %.6g %.6g %.6g\n" % tuple(kd if mat.base_color is None else [1.0, 1.0, 1.0]),
           "Ks 0 %.6g %.6g\n" % (float(mat.roughness_factor), float(mat.metallic_factor))]
    for key, tex, kind, name in (("map_Kd", mat.base_color, "base_color", "texture_kd.png"),
                                 ("map_Ks", mat.orm, "orm", "texture_ks.png"),
                                 ("bump", mat.normal, "normal", "texture_n.png")):
        if tex is not None:
            tp = p.parent / name
            write_png(tp, texture_to_file_image(tex, kind))
            mtl.append(f"{key} {name}\n")
            written.append(tp)
    mtl_path.write_text("".join(mtl), encoding="utf-8")
    written.insert(1, mtl_path)
    return written


# -------------------------------------------------------------------------------------------- PLY


def split_seams(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One index per corner: ``(vertex_ids[V'], faces[F,3], uvs[V',2] or None)``.

    ``vertex_ids`` maps each new vertex to its original position row; positions are duplicated only
    where one position has several uvs (seams). Used by PLY and glTF, which index all attributes at once.
    """
    f = mesh.faces.cpu().numpy()
    if mesh.uvs is None:
        return np.arange(mesh.num_vertices), f, None
    ft = mesh.uv_faces.cpu().numpy()
    pairs = np.stack([f.reshape(-1), ft.reshape(-1)], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    return uniq[:, 0], inv.reshape(-1, 3), mesh.uvs.detach().cpu().numpy()[uniq[:, 1]]


def _write_ply(mesh: Mesh, p: Path) -> list[Path]:
    ids, faces, uv = split_seams(mesh)
    n = len(ids)
    cols = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    v = mesh.vertices.detach().cpu().numpy()[ids]
    data = {"x": v[:, 0], "y": v[:, 1], "z": v[:, 2]}
    if mesh.normals is not None:
        nn = mesh.normals.detach().cpu().numpy()[ids]
        cols += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
        data.update(nx=nn[:, 0], ny=nn[:, 1], nz=nn[:, 2])
    if uv is not None:
        cols += [("s", "<f4"), ("t", "<f4")]
        data.update(s=uv[:, 0], t=uv[:, 1])
    if mesh.vertex_colors is not None:
        c = np.round(linear_to_srgb(mesh.vertex_colors.detach().cpu().float().clamp(0.0, 1.0)).numpy()[ids] * 255).astype(np.uint8)
        cols += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        data.update(red=c[:, 0], green=c[:, 1], blue=c[:, 2])
    verts = np.zeros(n, dtype=cols)
    for name, _ in cols:
        verts[name] = data[name]
    ftab = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    ftab["n"] = 3
    ftab["i"] = faces
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment written by unrender", f"element vertex {n}"]
    header += [f"property {types[t]} {name}" for name, t in cols]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    p.write_bytes(("\n".join(header) + "\n").encode("ascii") + verts.tobytes() + ftab.tobytes())
    return [p]


# ------------------------------------------------------------------------------- PLY / glTF in


def _read_with_trimesh(p: Path) -> dict:
    import trimesh

    try:
        loaded = trimesh.load(str(p), process=False, maintain_order=True)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for corrupt files
        raise DataError(f"Mesh file {p} could not be parsed ({type(exc).__name__}: {str(exc)[:120]}); "
                        f"re-export it.") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        if not geoms:
            raise DataError(f"{p} contains no faces; give a triangle mesh, not a point cloud or empty scene.")
        tm = geoms[0] if len(geoms) == 1 else trimesh.util.concatenate(geoms)
    elif isinstance(loaded, trimesh.Trimesh):
        tm = loaded
    else:
        raise DataError(f"{p} contains no faces; give a triangle mesh, not a point cloud.")
    vertices = np.asarray(tm.vertices, dtype=np.float64)
    faces = np.asarray(tm.faces, dtype=np.int64).reshape(-1, 3)
    out: dict = {"vertices": vertices, "faces": faces}
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        return out  # _checked_mesh reports it
    visual = tm.visual
    uv = getattr(visual, "uv", None) if visual is not None and visual.kind == "texture" else None
    normals = None  # recomputed on demand; files with one index per corner rarely have seam-consistent ones
    colors = None
    c = None
    if visual is not None and visual.kind == "vertex":
        c = np.asarray(visual.vertex_colors)[:, :3]
    elif "color" in getattr(tm, "vertex_attributes", {}):  # PLY with both uvs and colours
        c = np.asarray(tm.vertex_attributes["color"])[:, :3]
    if c is not None and len(c) == len(vertices):
        c = c.astype(np.float32) / (255.0 if c.dtype.kind in "ui" else 1.0)
        colors = srgb_to_linear(torch.from_numpy(c)).numpy()
    material = None
    if visual is not None and visual.kind == "texture" and getattr(visual, "material", None) is not None:
        # trimesh invents a 2x2 placeholder image for PLYs with uvs but no texture; skip those.
        if p.suffix.lower() != ".ply" or b"TextureFile" in p.read_bytes()[:4096]:
            material = _trimesh_material(visual.material)
    # Formats with one index per corner duplicate positions at seams; weld them back.
    uniq, inv = np.unique(vertices, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    if len(uniq) < len(vertices):
        # keep first-occurrence order so output is stable and close to the file's order
        first = np.full(len(uniq), len(vertices))
        np.minimum.at(first, inv, np.arange(len(vertices)))
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        out["vertices"] = uniq[order]
        out["faces"] = rank[inv][faces]
        if colors is not None:
            colors = colors[first[order]]
    if uv is not None and len(uv) == len(vertices):
        out.update(uvs=np.asarray(uv, dtype=np.float64), uv_faces=faces)
    out.update(normals=normals, vertex_colors=colors, material=material)
    return out


def _pil_to_tensor(im) -> torch.Tensor | None:
    if im is None:
        return None
    a = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a)


def _trimesh_material(tmat) -> PBRMaterial:
    import trimesh

    mat = PBRMaterial()
    if isinstance(tmat, trimesh.visual.material.SimpleMaterial):
        tmat = tmat.to_pbr()
    base = _pil_to_tensor(getattr(tmat, "baseColorTexture", None))
    factor = getattr(tmat, "baseColorFactor", None)
    if factor is not None:
        f = np.asarray(factor, dtype=np.float32)
        f = f / 255.0 if f.dtype.kind in "ui" or f.max() > 1.0 else f
        mat.base_color_factor = torch.tensor(f[:3], dtype=torch.float32)
    if base is not None:
        mat.base_color = texture_from_file_image(base, "base_color")
    mr = _pil_to_tensor(getattr(tmat, "metallicRoughnessTexture", None))
    occ = _pil_to_tensor(getattr(tmat, "occlusionTexture", None))
    if mr is not None:
        orm = texture_from_file_image(mr, "orm").clone()
        if occ is not None and occ.shape[:2] == mr.shape[:2]:
            orm[..., 0] = torch.flip(occ, dims=[0])[..., 0]
        else:
            orm[..., 0] = 1.0
        mat.orm = orm
    rf, mf = getattr(tmat, "roughnessFactor", None), getattr(tmat, "metallicFactor", None)
    mat.roughness_factor = float(rf) if rf is not None else (1.0 if mr is not None else 0.5)
    mat.metallic_factor = float(mf) if mf is not None else (1.0 if mr is not None else 0.0)
    nt = _pil_to_tensor(getattr(tmat, "normalTexture", None))
    if nt is not None:
        mat.normal = texture_from_file_image(nt, "normal")
    return mat
