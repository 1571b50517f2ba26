"""The in-memory multi-view dataset every layout reader returns, and the helpers the readers share.

A :class:`MultiViewDataset` holds one split of a posed image collection:

* ``rgba[N,H,W,4]`` float16: colour as stored in the files (sRGB-encoded, straight alpha) and the mask in
  the alpha channel, all in [0,1]. Float16 holds every 8-bit value exactly enough that ``round(255 x)``
  gives back the file's bytes, at half the memory of float32.
* ``camera``: ``N`` pinhole cameras (:class:`unrender.cameras.Camera`), OpenGL camera-to-world in the
  dataset's *own* world frame: readers convert axis conventions but never recentre or rescale the world,
  so meshes reconstructed from it compare with the dataset's ground truth without alignment.
* ``names`` (frame names: the image file's stem, or its path below the image folder without extension
  for layouts whose image names hold sub-folders), ``files`` (image paths), ``split``.
* ``bounds[2,3]``: a world-space box around the object when the layout says where it is (COLMAP points,
  IDR's ``scale_mat``), else ``None``.
* ``has_masks``: ``False`` when the files carry no mask at all (then the alpha channel is all ones).

Masks come from the alpha channel of RGBA images; otherwise from a ``mask/`` or ``masks/`` folder next to
the images (same stem, any image extension, any channel count, ``> 0.5`` = object, so soft masks become
binary); otherwise there are none.

Layouts without split files (COLMAP, LLFF, IDR, JSON folder) use the LLFF convention: sorted by image
name, every 8th frame (indices 0, 8, 16, ...) is ``"test"``, the others ``"train"``; ``"all"`` gives all.

:func:`read_dataset` finds the layout of a folder and calls its reader.

Example:
    >>> ds = read_dataset("scene", split="train")      # doctest: +SKIP
    >>> rgb, mask = ds.frames([0, 1])                   # doctest: +SKIP
    >>> rgb.shape, mask.shape                           # doctest: +SKIP
    (torch.Size([2, 800, 800, 3]), torch.Size([2, 800, 800, 1]))
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ...cameras import Camera
from ...color import srgb_to_linear
from ...errors import DataError, InputError
from ...io.images import read_image, write_png

#: Image file extensions the readers look for (lower case; upper-case files match too).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".webp")
#: Mask folder names tried next to the images, in order.
MASK_FOLDERS = ("mask", "masks")
#: Every ``TEST_EVERY``-th frame (sorted by name) is a test frame in layouts without split files.
TEST_EVERY = 8


@dataclass
class MultiViewDataset:
    """One split of a posed multi-view image collection (see the module docstring for the conventions).

    Attributes:
        rgba: ``[N,H,W,4]`` float16, sRGB-encoded colour and alpha (= mask) in [0,1], as stored.
        camera: ``N`` cameras of one image size ``W x H``, OpenGL camera-to-world in the dataset's world frame.
        names: ``N`` frame names (image file stems).
        files: ``N`` image paths.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        bounds: ``[2,3]`` (min corner, max corner) box around the object in world units, or ``None``.
        has_masks: whether the masks come from files (alpha or mask images); ``False`` means all ones.
        layout: name of the layout the dataset was read from (``"blender"``, ``"colmap"``, ...), if any.

    Example:
        >>> cam = Camera.from_fov(40.0, 4, 3, torch.eye(4))
        >>> ds = MultiViewDataset(torch.ones(1, 3, 4, 4, dtype=torch.float16), cam, ["a"], [Path("a.png")], "all")
        >>> len(ds), ds.frames(0)[0].shape
        (1, torch.Size([1, 3, 4, 3]))
    """

    rgba: torch.Tensor
    camera: Camera
    names: list[str]
    files: list[Path]
    split: str
    bounds: torch.Tensor | None = None
    has_masks: bool = True
    layout: str = ""

    def __post_init__(self):
        if not isinstance(self.rgba, torch.Tensor) or self.rgba.dim() != 4 or self.rgba.shape[-1] != 4:
            raise InputError(f"rgba must be a tensor of shape [N,H,W,4]; got {getattr(self.rgba, 'shape', None)}.")
        n, h, w, _ = self.rgba.shape
        if len(self.camera) != n or len(self.names) != n or len(self.files) != n:
            raise InputError(f"rgba holds {n} frames but there are {len(self.camera)} cameras, {len(self.names)} "
                             f"names and {len(self.files)} files; give one of each per frame.")
        if (self.camera.width, self.camera.height) != (w, h):
            raise InputError(f"the cameras are {self.camera.width}x{self.camera.height} pixels but the images "
                             f"are {w}x{h}; they must match.")
        if self.bounds is not None:
            self.bounds = torch.as_tensor(self.bounds, dtype=self.camera.c2w.dtype).reshape(2, 3)
            if not torch.isfinite(self.bounds).all() or bool((self.bounds[0] > self.bounds[1]).any()):
                raise InputError(f"bounds must be a finite [2,3] box with min <= max; got {self.bounds.tolist()}.")
        self.files = [Path(f) for f in self.files]
        self.names = [str(s) for s in self.names]

    def __len__(self) -> int:
        return self.rgba.shape[0]

    def _indices(self, idx) -> torch.Tensor:
        try:
            return torch.arange(len(self))[idx].reshape(-1)
        except (IndexError, TypeError) as exc:
            raise InputError(f"frame index {idx!r} is not valid for a dataset of {len(self)} frames ({exc}).") from None

    def frames(self, idx, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear colour and mask of frames ``idx`` (int, slice, list or index tensor).

        ``rgb = srgb_to_linear(rgba[..., :3])`` (straight colour, not premultiplied), ``mask = rgba[..., 3:]``.

        Returns:
            ``(rgb[B,H,W,3], mask[B,H,W,1])``, float32.

        Example:
            >>> rgb, mask = ds.frames(slice(0, 4))  # doctest: +SKIP
        """
        sel = self.rgba[self._indices(idx)].to(device=device, dtype=torch.float32)
        return srgb_to_linear(sel[..., :3]), sel[..., 3:].contiguous()

    def subset(self, idx) -> MultiViewDataset:
        """A dataset of frames ``idx`` only (same split, bounds and flags; tensors are indexed copies).

        Example:
            >>> first_two = ds.subset([0, 1])  # doctest: +SKIP
        """
        i = self._indices(idx)
        return replace(self, rgba=self.rgba[i], camera=self.camera[i], names=[self.names[k] for k in i.tolist()],
                       files=[self.files[k] for k in i.tolist()])


# --------------------------------------------------------------------------------------------- reading


def read_dataset(path, split: str = "train", layout: str | None = None, dtype=torch.float32) -> MultiViewDataset:
    """Read the ``split`` of the dataset folder ``path``, detecting its layout (or using ``layout``).

    Detection, first match wins: ``transforms_*.json`` or ``transforms.json`` -> ``"blender"``;
    ``sparse/0/`` or ``sparse/`` holding ``cameras.bin``/``cameras.txt`` -> ``"colmap"``;
    ``poses_bounds.npy`` -> ``"llff"``; ``cameras.npz`` -> ``"idr"``; images with ``.json`` sidecars ->
    ``"json"``.

    Args:
        path: dataset folder.
        split: ``"train"``, ``"val"``, ``"test"`` (Blender split files) or ``"train"``/``"test"``/``"all"``
            (every 8th frame is test, see the module docstring).
        layout: force one of ``"blender"``, ``"colmap"``, ``"llff"``, ``"idr"``, ``"json"``.
        dtype: camera dtype (float32 or float64).
    Returns:
        the :class:`MultiViewDataset`.

    Example:
        >>> ds = read_dataset("nerf_synthetic/lego", "test")  # doctest: +SKIP
    """
    # Imported here because every layout module imports this one for MultiViewDataset and the helpers.
    from . import blender, colmap, idr, json_folder, llff

    readers = {"blender": blender.read_blender, "colmap": colmap.read_colmap, "llff": llff.read_llff,
               "idr": idr.read_idr, "json": json_folder.read_json_folder}
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"Dataset folder {root} does not exist or is not a folder; check the path.")
    if layout is None:
        layout = detect_layout(root)
    if layout not in readers:
        raise InputError(f"layout must be one of {', '.join(readers)}; got {layout!r}.")
    return readers[layout](root, split=split, dtype=dtype)


def detect_layout(root) -> str:
    """Name of the layout of folder ``root`` (see :func:`read_dataset`), or a :class:`DataError` listing
    what was looked for.

    Example:
        >>> detect_layout("nerf_synthetic/lego")  # doctest: +SKIP
        'blender'
    """
    root = Path(root)
    if any(root.glob("transforms_*.json")) or (root / "transforms.json").is_file():
        return "blender"
    for sparse in (root / "sparse" / "0", root / "sparse"):
        if any((sparse / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return "colmap"
    if (root / "poses_bounds.npy").is_file():
        return "llff"
    if (root / "cameras.npz").is_file():
        import numpy as np

        with np.load(root / "cameras.npz") as cams:
            if "camera_mat_0" in cams.files:  # DVR keeps a pose and an NDC intrinsic, not IDR's projection
                raise DataError(f"{root / 'cameras.npz'} is a DVR/ShapeNet object (camera_mat_i present), not a "
                                f"multi-view scene; read it with unrender.data.collection.read_dvr_object.")
        return "idr"
    if any(p.with_suffix(".json").is_file() for p in image_files(root)):
        return "json"
    raise DataError(f"{root} matches no known dataset layout: looked for transforms_{{train,val,test}}.json or "
                    f"transforms.json (Blender/NeRF-synthetic/instant-ngp), sparse/0/ or sparse/ with "
                    f"cameras.bin or cameras.txt (COLMAP), poses_bounds.npy (LLFF), cameras.npz (IDR/DTU), and "
                    f"images with same-name .json sidecars; point at the folder that holds one of these.")


def image_files(folder) -> list[Path]:
    """Image files directly in ``folder`` (any of :data:`IMAGE_EXTENSIONS`), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def split_indices(n: int, split: str, source) -> list[int]:
    """Frame indices of ``split`` among ``n`` frames sorted by name: every 8th (0, 8, ...) is ``"test"``.

    This is the LLFF/NeRF convention (``i_test = arange(n)[::8]``); ``"all"`` keeps every frame.

    Example:
        >>> split_indices(10, "test", "scene")
        [0, 8]
    """
    if split == "all":
        return list(range(n))
    if split == "test":
        return list(range(0, n, TEST_EVERY))
    if split == "train":
        return [i for i in range(n) if i % TEST_EVERY != 0] or list(range(n))
    raise InputError(f"{source} has no split files, so split must be 'train', 'test' (every {TEST_EVERY}th image "
                     f"by name) or 'all'; got {split!r}.")


def find_mask(mask_dirs, relative_name: str) -> Path | None:
    """The mask file of image ``relative_name`` (path below the image folder) in ``mask_dirs``, or ``None``.

    Tries ``<dir>/<relative_name>.png`` (COLMAP's convention, e.g. ``masks/a.jpg.png``), then
    ``<dir>/<name without extension>.<ext>`` for every image extension.
    """
    rel = Path(relative_name)
    for d in mask_dirs:
        d = Path(d)
        exact = d / (str(rel) + ".png")
        if exact.is_file():
            return exact
        parent = (d / rel).parent
        stem = rel.stem if rel.suffix.lower() in IMAGE_EXTENSIONS else rel.name
        if parent.is_dir():
            for p in sorted(parent.iterdir()):
                if p.is_file() and p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS:
                    return p
    return None


def mask_dirs_near(folder) -> list[Path]:
    """Existing ``mask/`` and ``masks/`` folders inside ``folder``."""
    return [Path(folder) / m for m in MASK_FOLDERS if (Path(folder) / m).is_dir()]


def load_frames(files, masks) -> tuple[torch.Tensor, bool]:
    """Read images ``files`` and their masks into ``rgba[N,H,W,4]`` float16 (sRGB colour, alpha = mask).

    Per frame: an RGBA image's alpha is its mask; else ``masks[i]`` (a path or ``None``) is read and
    thresholded at 0.5 on the mean of its colour channels. Either every frame has a mask or none does
    (then alpha = 1 and ``has_masks`` is ``False``).

    Returns:
        ``(rgba, has_masks)``.
    Raises:
        DataError: images of different sizes, a mask of another size than its image, or masks for only
            some frames.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DataError("The dataset split holds no frames; check the split name and the folder.")
    out, size, masked = None, None, []
    for i, (f, m) in enumerate(zip(files, masks)):
        img = read_image(f)
        h, w = img.shape[:2]
        if out is None:
            size, out = (w, h), torch.empty(len(files), h, w, 4, dtype=torch.float16)
        elif (w, h) != size:
            raise DataError(f"Image {f} is {w}x{h} pixels but {files[0]} is {size[0]}x{size[1]}; all images of "
                            f"one split must have one size, so resize them to match.")
        out[i, ..., :3] = img[..., :3]
        if img.shape[-1] == 4:
            out[i, ..., 3] = img[..., 3]
            masked.append(True)
        elif m is not None:
            mask = read_image(m)
            if mask.shape[:2] != img.shape[:2]:
                raise DataError(f"Mask {m} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {f} is {w}x{h}; "
                                f"masks must have the size of their image.")
            out[i, ..., 3] = (mask[..., :3].mean(-1) > 0.5).to(torch.float16)
            masked.append(True)
        else:
            out[i, ..., 3] = 1.0
            masked.append(False)
    if any(masked) and not all(masked):
        missing = files[masked.index(False)]
        raise DataError(f"Image {missing} has no mask (no alpha channel and no mask file) while other frames "
                        f"have one; add its mask or remove the other masks.")
    return out, all(masked)


def read_json(path) -> object:
    """Parse JSON file ``path``, turning syntax errors into a :class:`DataError` naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"JSON file {p} does not exist; check the path.")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                        f"fix the file.") from None
    except UnicodeDecodeError:
        raise DataError(f"{p} is not UTF-8 text; re-save it as UTF-8 JSON.") from None


def matrix(value, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """``value`` as a finite float64 tensor of ``shape``, or a :class:`DataError` naming ``what``."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{what} must be a {'x'.join(map(str, shape))} array of numbers; fix it.") from None
    if tuple(t.shape) != shape:
        raise DataError(f"{what} must have shape {'x'.join(map(str, shape))}; got {'x'.join(map(str, t.shape))}.")
    if not torch.isfinite(t).all():
        raise DataError(f"{what} holds NaN or infinite values; every pose and intrinsic must be finite.")
    return t


def opencv_to_opengl(c2w_cv: torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world ``[...,4,4]`` from OpenCV camera-to-world (x right, y down, z forward).

    ``c2w_gl = c2w_cv @ diag(1, -1, -1, 1)``: the camera's y and z axes flip, the centre stays.
    """
    flip = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=c2w_cv.dtype, device=c2w_cv.device)
    return c2w_cv * flip


def clip_planes(c2w: torch.Tensor, bounds: torch.Tensor | None) -> tuple[float, float]:
    """``(near, far)`` that suit the scene's scale, since worlds range from unit spheres to millimetres.

    With a box: ``near`` = 0.5 x the nearest camera-to-box distance (at least 1e-3 x the farthest corner
    distance), ``far`` = 1.5 x the farthest corner distance. Without: ``s`` = spread of the camera centres
    (or their distance from the origin), ``near = 0.01 s``, ``far = 100 s``.

    Args:
        c2w: ``[N,4,4]`` camera-to-world; bounds: ``[2,3]`` box or ``None``.

    Example:
        >>> clip_planes(torch.eye(4)[None], torch.tensor([[-1.0, -1, -4], [1, 1, -2]]))
        (1.0, 6.363961030678928)
    """
    centres = c2w[:, :3, 3].double()
    if bounds is not None:
        b = bounds.double()
        corners = torch.stack(torch.meshgrid(*[b[:, k] for k in range(3)], indexing="ij"), -1).reshape(-1, 3)
        far = float(torch.cdist(centres, corners).max())
        gap = (torch.maximum(b[0] - centres, centres - b[1]).clamp_min(0)).norm(dim=-1).min()
        return max(0.5 * float(gap), 1e-3 * far), 1.5 * far
    spread = float((centres - centres.mean(0)).norm(dim=-1).max()) if len(centres) > 1 else 0.0
    s = spread if spread > 1e-9 else max(float(centres.norm(dim=-1).max()), 1.0)
    return 0.01 * s, 100.0 * s


def make_camera(c2w, fx, fy, cx, cy, width: int, height: int, bounds=None, dtype=torch.float32) -> Camera:
    """A :class:`Camera` (``c2w[N,4,4]`` OpenGL, intrinsics ``[N]`` in pixels) with :func:`clip_planes`.

    Example:
        >>> make_camera(torch.eye(4)[None], 50.0, 50.0, 32.0, 24.0, 64, 48).width
        64
    """
    c2w = torch.as_tensor(c2w, dtype=torch.float64)
    near, far = clip_planes(c2w, bounds)
    as_t = lambda v: torch.as_tensor(v, dtype=torch.float64).to(dtype)  # noqa: E731
    return Camera(c2w.to(dtype), as_t(fx), as_t(fy), as_t(cx), as_t(cy), int(width), int(height), near, far)


def check_sizes(files, width: int, height: int, rgba: torch.Tensor, source) -> None:
    """Raise when the images (``rgba[N,H,W,4]``) are not the ``width x height`` that ``source`` declares.

    Example:
        >>> check_sizes(["a.png"], 4, 3, torch.zeros(1, 3, 4, 4), "cameras.txt")
    """
    h, w = rgba.shape[1:3]
    if (w, h) != (int(width), int(height)):
        raise DataError(f"{source} declares {int(width)}x{int(height)} images but {files[0]} is {w}x{h}; "
                        f"use the images the cameras were calibrated on (or rescale the intrinsics).")


# --------------------------------------------------------------------------------------------- writing


def prepare_folder(out, force: bool) -> Path:
    """Create ``out``; a non-empty folder is refused unless ``force`` (files are then overwritten in place).

    Example:
        >>> prepare_folder("out_dataset", force=False)  # doctest: +SKIP
        PosixPath('out_dataset')
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another output path.")
    if out.exists() and any(out.iterdir()) and not force:
        raise DataError(f"{out} already holds files; choose another folder or pass force=True to write into it.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_rgb_and_masks(image_dir, file_names, rgba, mask_dir=None, mask_names=None) -> list[Path]:
    """Write ``rgba[N,H,W,4]`` as RGB PNGs ``image_dir/<file_names[i]>`` and, when ``mask_dir`` is given, the
    alpha as grey PNGs ``mask_dir/<mask_names[i]>`` (default: the image names); readers threshold them at
    0.5. Returns the files written.

    Example:
        >>> write_rgb_and_masks("out/images", ["a.png"], torch.ones(1, 2, 2, 4), "out/masks")  # doctest: +SKIP
    """
    mask_names = file_names if mask_names is None else mask_names
    written = []
    for i, name in enumerate(file_names):
        p = Path(image_dir) / name
        write_png(p, rgba[i, ..., :3].float())
        written.append(p)
        if mask_dir is not None:
            m = Path(mask_dir) / mask_names[i]
            write_png(m, rgba[i, ..., 3:].float())
            written.append(m)
    return written


def sorted_order(names) -> list[int]:
    """Indices that sort ``names`` (the order name-sorted layouts read frames back in).

    Example:
        >>> sorted_order(["b", "a", "c"])
        [1, 0, 2]
    """
    return sorted(range(len(names)), key=lambda i: names[i])


def field_of_view(focal: float, size: int) -> float:
    """Field of view in radians ``2 atan(size / (2 focal))`` of a pinhole with ``focal`` pixels.

    Example:
        >>> round(field_of_view(50.0, 100), 4)
        1.5708
    """
    return 2.0 * math.atan(0.5 * size / focal)
