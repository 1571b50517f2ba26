"""DVR's ShapeNet (NMR) object-collection layout: writer and reader.

The layout of DVR (Niemeyer et al., CVPR 2020; the "NMR" 64x64 ShapeNet renderings it hosts), read by
DIB-R's reimplementation and pixelNeRF, built on Occupancy Networks' ShapeNet folders::

    ROOT/metadata.yaml                 optional: per synset ``<synset>: {id: <synset>, name: <words>}``
    ROOT/<synset>/                     one folder per category, a ShapeNet synset id (03001627 = chair)
        train.lst val.lst test.lst     split lists: one model id per line (DVR / Occupancy Networks)
        softras_train.lst ...          the same lists under the names DIB-R's loader and pixelNeRF read
        <model>/                       one folder per object (ShapeNet: a 32-hex-digit id)
            image/0000.png ...         V renderings, 8-bit sRGB RGB, paired with view i by sorted name
            mask/0000.png ...          V masks, 8-bit grey: pixel coverage, 255 = object, 0 = background
                                       (ours are soft at the rims; threshold at 128 for a binary mask --
                                       DVR's loader counts any non-zero pixel as object)
            cameras.npz                per view i: world_mat_i, camera_mat_i [4,4] (see .dvr_cameras),
                                       world_mat_inv_i, camera_mat_inv_i (their inverses), scale_mat_i
            pointcloud.npz             points [P,3] on the surface, normals [P,3] (unit, outward),
                                       loc [3], scale [] (Occupancy Networks: original = points * scale + loc)
            points.npz                 optional occupancy samples: points [Q,3], occupancies (np.packbits of
                                       [Q] bool, 1 = inside), loc, scale
            mesh.obj (+ mesh.mtl)      unrender's addition: the watertight mesh (sRGB vertex colours)

Conventions: images and masks are ``%04d.png`` (DIB-R's loader builds these names; DVR and pixelNeRF sort
the folder). The object frame is the frame of ``pointcloud.npz`` and ``mesh.obj``: y up, centred, longest
side 1 (Occupancy Networks' normalised ShapeNet), and ``scale_mat_i`` maps it to DVR's world (identity for
ShapeNet). :func:`read_dvr_object` returns cameras in that frame as :class:`unrender.cameras.Camera`
(OpenGL camera-to-world), images in *linear* RGB (``srgb_to_linear`` of the file), masks in [0,1].

Example:
    >>> index = read_collection_index("NMR_Dataset")                 # doctest: +SKIP
    >>> category, model = index.splits["train"][0]                   # doctest: +SKIP
    >>> obj = read_dvr_object(index.model_dir(category, model))      # doctest: +SKIP
    >>> obj.images.shape, len(obj.camera)                            # doctest: +SKIP
    (torch.Size([24, 64, 64, 3]), 24)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera
from ...color import linear_to_srgb, srgb_to_linear
from ...errors import DataError, InputError
from ...io.images import read_image, write_png
from .dvr_cameras import camera_to_dvr, dvr_to_camera

SPLITS = ("train", "val", "test")
#: Split-list prefixes tried in order: DVR's ``train.lst``, then the ``softras_train.lst`` of NMR/DIB-R.
LIST_PREFIXES = ("", "softras_")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class DVRObject:
    """One object of a DVR collection (shapes below: ``V`` views of ``H x W`` pixels, ``P`` surface points).

    Attributes:
        category: category folder (synset id).
        model: model id (the object's folder name).
        images: linear RGB ``[V,H,W,3]`` float32 (the files are sRGB).
        masks: ``[V,H,W]`` float32 in [0,1] as stored (1 = object; coverage where the files are soft).
        camera: ``V`` cameras, OpenGL camera-to-world in the object frame.
        view_ids: ``[V]`` indices ``i`` of the views read (their ``world_mat_i``).
        points, normals: surface samples ``[P,3]`` from ``pointcloud.npz`` (object frame), or ``None``.
        loc, scale: ``pointcloud.npz``'s normalisation (original mesh = ``points * scale + loc``).
        path: the object's folder.
        mesh_path: ``mesh.obj`` when present, else ``None``.
    """

    category: str
    model: str
    images: torch.Tensor
    masks: torch.Tensor
    camera: Camera
    view_ids: list[int]
    points: torch.Tensor | None
    normals: torch.Tensor | None
    loc: torch.Tensor | None
    scale: float | None
    path: Path
    mesh_path: Path | None = None


@dataclass
class CollectionIndex:
    """Which objects a DVR collection holds, per split.

    Attributes:
        root: the collection folder.
        categories: category folders (synset ids), sorted.
        names: synset -> readable name (from ``metadata.yaml``; the synset itself when absent).
        splits: ``"train"``, ``"val"``, ``"test"`` -> list of ``(category, model)`` in list-file order.
    """

    root: Path
    categories: list[str]
    names: dict[str, str]
    splits: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def model_dir(self, category: str, model: str) -> Path:
        """Folder of one object: ``root / category / model``."""
        return self.root / category / model

    def objects(self, split: str) -> list[tuple[str, str]]:
        """``(category, model)`` pairs of ``split`` (``"all"``: train, val and test in that order)."""
        if split == "all":
            return [pair for s in SPLITS for pair in self.splits.get(s, [])]
        if split not in SPLITS:
            raise InputError(f"split must be one of train, val, test or all; got {split!r}.")
        return list(self.splits.get(split, []))


# ------------------------------------------------------------------------------------------ writing


def _metadata_yaml(names: dict[str, str]) -> str:
    return "".join(f"{syn}:\n  id: '{syn}'\n  name: {name}\n" for syn, name in sorted(names.items()))


def write_collection_lists(root, splits: dict[str, dict[str, list[str]]], names: dict[str, str]) -> None:
    """Write ``root/metadata.yaml`` and every ``root/<synset>/{,softras_}{train,val,test}.lst``.

    Args:
        root: collection folder.
        splits: split -> synset -> model ids.
        names: synset -> readable category name.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> write_collection_lists(root, {"train": {"03001627": ["a"]}, "val": {}, "test": {}}, {"03001627": "chair"})
        >>> (root / "03001627" / "softras_train.lst").read_text().split(), read_metadata(root)
        (['a'], {'03001627': 'chair'})
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.yaml").write_text(_metadata_yaml(names), encoding="utf-8")
    for syn in names:
        (root / syn).mkdir(exist_ok=True)
        for split in SPLITS:
            text = "".join(f"{m}\n" for m in splits.get(split, {}).get(syn, []))
            for prefix in LIST_PREFIXES:
                (root / syn / f"{prefix}{split}.lst").write_text(text, encoding="utf-8")


def write_dvr_object(model_dir, images, masks, camera: Camera, points=None, normals=None, occupancy=None) -> Path:
    """Write one object in the DVR layout (``image/``, ``mask/``, ``cameras.npz``, ``pointcloud.npz``, ``points.npz``).

    Args:
        model_dir: the object's folder (created).
        images: linear RGB ``[V,H,W,3]`` in [0,1], already composited over the background; written sRGB.
        masks: ``[V,H,W]`` coverage in [0,1]; written as ``round(255 m)`` grey.
        camera: ``V`` cameras of size ``W x H`` in the object frame.
        points, normals: surface samples ``[P,3]`` (object frame) for ``pointcloud.npz`` (float16, as
            Occupancy Networks stores them), with ``loc = 0``, ``scale = 1``.
        occupancy: optional ``(points[Q,3], inside[Q] bool)`` for ``points.npz``.
    Returns:
        ``model_dir``.

    Example:
        >>> import tempfile
        >>> from unrender.cameras import look_at
        >>> cam = Camera.from_fov(50.0, 8, 8, look_at((0.0, 0.0, 2.0)))
        >>> d = write_dvr_object(Path(tempfile.mkdtemp()) / "obj", torch.ones(1, 8, 8, 3), torch.ones(1, 8, 8), cam)
        >>> sorted(p.name for p in d.iterdir())
        ['cameras.npz', 'image', 'mask']
    """
    model_dir = Path(model_dir)
    images = torch.as_tensor(images, dtype=torch.float32)
    masks = torch.as_tensor(masks, dtype=torch.float32)
    v = len(camera)
    if images.dim() != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3] or images.shape[0] != v:
        raise InputError(f"need images [V,H,W,3] and masks [V,H,W] for V = {v} cameras; got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}.")
    if (images.shape[2], images.shape[1]) != (camera.width, camera.height):
        raise InputError(f"images are {images.shape[2]}x{images.shape[1]} but the cameras "
                         f"{camera.width}x{camera.height}; they must match.")
    for i in range(v):
        write_png(model_dir / "image" / f"{i:04d}.png", linear_to_srgb(images[i].clamp(0, 1)))
        write_png(model_dir / "mask" / f"{i:04d}.png", masks[i, :, :, None])
    world, k = camera_to_dvr(camera)
    mats = {}
    for i in range(v):
        mats.update({f"world_mat_{i}": world[i], f"camera_mat_{i}": k[i], f"world_mat_inv_{i}": np.linalg.inv(world[i]),
                     f"camera_mat_inv_{i}": np.linalg.inv(k[i]), f"scale_mat_{i}": np.eye(4)})
    np.savez(model_dir / "cameras.npz", **mats)
    unit = {"loc": np.zeros(3, np.float32), "scale": np.float32(1.0)}
    if points is not None:
        if normals is None or torch.as_tensor(points).shape != torch.as_tensor(normals).shape:
            raise InputError("pointcloud.npz needs points [P,3] with normals [P,3] of the same shape.")
        p = torch.as_tensor(points).detach().cpu().numpy().astype(np.float16)
        n = torch.as_tensor(normals).detach().cpu().numpy().astype(np.float16)
        np.savez(model_dir / "pointcloud.npz", points=p, normals=n, **unit)
    if occupancy is not None:
        q, inside = occupancy
        np.savez(model_dir / "points.npz", points=torch.as_tensor(q).cpu().numpy().astype(np.float16),
                 occupancies=np.packbits(torch.as_tensor(inside).cpu().numpy().astype(bool)), **unit)
    return model_dir


# ------------------------------------------------------------------------------------------ reading


def read_metadata(root) -> dict[str, str]:
    """Synset -> name from ``root/metadata.yaml`` (the two-level mapping DVR ships); ``{}`` when absent.

    Only the ``<synset>:`` / ``  name: <value>`` structure is read (no YAML library needed).

    Example:
        >>> read_metadata("NMR_Dataset")["02691156"]      # doctest: +SKIP
        'airplane'
    """
    path = Path(root) / "metadata.yaml"
    if not path.is_file():
        return {}
    names, current = {}, None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        top = re.match(r"^['\"]?([^\s'\":#][^'\":]*)['\"]?\s*:\s*$", line)
        if top:
            current = top.group(1).strip()
            names[current] = current
            continue
        item = re.match(r"^\s+name\s*:\s*(.*?)\s*$", line)
        if item and current is not None:
            names[current] = item.group(1).strip().strip("'\"")
    return names


def _read_list(path: Path, category_dir: Path) -> list[str]:
    models = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    for m in models:
        if not (category_dir / m).is_dir():
            raise DataError(f"{path} lists model {m!r} but {category_dir / m} is not a folder; remove the line "
                            f"or restore the object's folder.")
    return models


def read_collection_index(root, categories=None) -> CollectionIndex:
    """Index of the DVR collection in ``root``: categories, names and the split lists.

    Categories are the given synsets, else every sub-folder holding a ``.lst`` file. Per category and
    split, ``<split>.lst`` is read, else ``softras_<split>.lst``; a split with neither is empty, a
    category with no list at all is an error.

    Example:
        >>> index = read_collection_index("NMR_Dataset", categories=["03001627"])   # doctest: +SKIP
        >>> len(index.objects("test"))                                                # doctest: +SKIP
        1317
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Collection folder {root} does not exist; check the path.")
    if categories is None:
        categories = sorted(d.name for d in root.iterdir() if d.is_dir() and any(d.glob("*.lst")))
        if not categories:
            raise DataError(f"{root} holds no category folder with split lists (<synset>/train.lst or "
                            f"softras_train.lst); point at the collection's root folder.")
    names = read_metadata(root)
    index = CollectionIndex(root, list(categories), {c: names.get(c, c) for c in categories},
                            {s: [] for s in SPLITS})
    for cat in categories:
        cdir = root / cat
        if not cdir.is_dir():
            raise DataError(f"Category folder {cdir} does not exist; check the category id.")
        found = False
        for split in SPLITS:
            path = next((cdir / f"{p}{split}.lst" for p in LIST_PREFIXES if (cdir / f"{p}{split}.lst").is_file()), None)
            if path is not None:
                found = True
                index.splits[split] += [(cat, m) for m in _read_list(path, cdir)]
        if not found:
            raise DataError(f"{cdir} has no split list (train.lst, val.lst, test.lst or softras_*.lst); write one "
                            f"model id per line into them.")
    return index


def _sorted_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} could not be read as an .npz file ({exc}); regenerate it.") from None


def _read_frame(path: Path) -> torch.Tensor:
    try:
        return read_image(path)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"Image file {path} could not be read ({exc}); re-save it as PNG.") from None


def read_dvr_object(model_dir, views=None, load_points: bool = True, dtype=torch.float32) -> DVRObject:
    """Read one object folder of the DVR layout (module docstring): images, masks, cameras, point cloud.

    Image ``k`` in sorted order pairs with ``world_mat_k`` / ``camera_mat_k``; masks come from ``mask/``
    (sorted the same way), else from the images' alpha channel.

    Args:
        model_dir: ``ROOT/<synset>/<model>``.
        views: indices of the views to read (default all).
        load_points: read ``pointcloud.npz`` when present.
        dtype: camera dtype.
    Returns:
        :class:`DVRObject`.

    Example:
        >>> obj = read_dvr_object("NMR_Dataset/03001627/1a6f615e8b1b5ae4dbbc9440457e303e", views=[0])  # doctest: +SKIP
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"Object folder {model_dir} does not exist; check the category and model id.")
    cam_path = model_dir / "cameras.npz"
    if not cam_path.is_file():
        raise DataError(f"{cam_path} is missing; every DVR object folder needs cameras.npz with world_mat_i and "
                        f"camera_mat_i per view (regenerate the object or copy the file back).")
    mats = _load_npz(cam_path)
    n = sum(1 for k in mats if re.fullmatch(r"world_mat_\d+", k))
    files = _sorted_images(model_dir / "image")
    if n == 0:
        raise DataError(f"{cam_path} holds no world_mat_0 ...; it must store world_mat_i and camera_mat_i per view.")
    if len(files) != n:
        raise DataError(f"{cam_path} has {n} cameras but {model_dir / 'image'} holds {len(files)} images; they must "
                        f"pair up one to one (image k in sorted order = view k).")
    for i in range(n):
        for key in (f"world_mat_{i}", f"camera_mat_{i}"):
            if key not in mats:
                raise DataError(f"{cam_path} lacks {key}; views must be numbered 0 ... {n - 1} with both matrices.")
    mask_files = _sorted_images(model_dir / "mask")
    if mask_files and len(mask_files) != n:
        raise DataError(f"{model_dir / 'mask'} holds {len(mask_files)} masks but there are {n} images; give one "
                        f"mask per image.")
    ids = list(range(n)) if views is None else [int(i) for i in views]
    if any(i < 0 or i >= n for i in ids):
        raise InputError(f"views must lie in 0 ... {n - 1} for {model_dir}; got {ids}.")
    images, masks = [], []
    for i in ids:
        img = _read_frame(files[i])
        if mask_files:
            m = _read_frame(mask_files[i])[..., 0]
        elif img.shape[-1] == 4:
            m = img[..., 3]
        else:
            raise DataError(f"{model_dir} has no mask/ folder and {files[i].name} has no alpha channel; add "
                            f"mask/{files[i].stem}.png (255 = object) for every image.")
        if m.shape != img.shape[:2] or (images and img.shape[:2] != images[0].shape[:2]):
            raise DataError(f"{files[i]} and its mask or the other images differ in size; every image and mask of "
                            f"an object must have the same size.")
        images.append(srgb_to_linear(img[..., :3]))
        masks.append(m)
    h, w = images[0].shape[:2]
    scale = [mats[f"scale_mat_{i}"] for i in ids] if all(f"scale_mat_{i}" in mats for i in ids) else None
    camera = dvr_to_camera([mats[f"world_mat_{i}"] for i in ids], [mats[f"camera_mat_{i}"] for i in ids], w, h,
                           scale, source=str(cam_path), dtype=dtype)
    points = normals = loc = sc = None
    pc_path = model_dir / "pointcloud.npz"
    if load_points and pc_path.is_file():
        pc = _load_npz(pc_path)
        if "points" not in pc or "normals" not in pc or pc["points"].shape != pc["normals"].shape:
            raise DataError(f"{pc_path} must hold points [P,3] and normals [P,3]; regenerate it.")
        points = torch.from_numpy(pc["points"].astype(np.float32))
        normals = torch.from_numpy(pc["normals"].astype(np.float32))
        loc = torch.from_numpy(np.asarray(pc.get("loc", np.zeros(3)), dtype=np.float32))
        sc = float(pc.get("scale", 1.0))
    mesh_path = model_dir / "mesh.obj"
    return DVRObject(model_dir.parent.name, model_dir.name, torch.stack(images), torch.stack(masks), camera, ids,
                     points, normals, loc, sc, model_dir, mesh_path if mesh_path.is_file() else None)


def read_occupancy_points(model_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points[Q,3] float32, inside[Q] bool)`` from ``model_dir/points.npz`` (Occupancy Networks' format).

    Example:
        >>> q, inside = read_occupancy_points("coll/03001627/<model>")   # doctest: +SKIP
    """
    path = Path(model_dir) / "points.npz"
    data = _load_npz(path) if path.is_file() else None
    if data is None or "points" not in data or "occupancies" not in data:
        raise DataError(f"{path} is missing or lacks points/occupancies; regenerate the collection.")
    q = data["points"].astype(np.float32)
    inside = np.unpackbits(data["occupancies"])[: len(q)].astype(bool)
    return torch.from_numpy(q), torch.from_numpy(inside)
