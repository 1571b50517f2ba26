"""Input of Structure from Duplicates: one photo, its instance masks and the camera intrinsics.

``read_duplicates_input(image, masks, fov=None, focal=None)`` reads

* the photo: PNG/JPEG (sRGB, converted to linear) or Radiance ``.hdr`` (already linear);
* the instance masks, in one of three forms:
  - an instance-label image (PNG): 0 = background, every other value one instance (any values:
    1, 2, 3 or 10, 20, 30; grey 8/16-bit, palette indices or RGB colours with black as background);
  - a folder of binary mask images (one instance per file, foreground = value > 0.5, files in name order);
  - ``None``: the photo's alpha channel is the foreground mask, split into instances by connected
    components (8-connectivity), with a warning that says so;
* the intrinsics: a horizontal field of view in degrees or a focal length in pixels (square pixels,
  principal point at the image centre); neither gives a guessed 50 degree field of view, with a warning.

Every problem the user can fix is an :class:`~unrender.errors.InputError` naming the file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...color import srgb_to_linear
from ...errors import InputError, UnrenderError
from ...io.images import read_image

#: Field of view assumed when the user gives neither ``fov`` nor ``focal`` (a typical phone main camera is 65-75,
#: a normal lens ~47; 50 is the usual compromise of single-image methods).
DEFAULT_FOV_DEG = 50.0
#: Instances (or connected components) with fewer pixels than this are treated as empty.
MIN_INSTANCE_PIXELS = 16
_MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Intrinsics:
    """A pinhole camera's intrinsics (OpenCV pixel convention: x right, y down, origin at the top-left corner).

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels.
        width, height: image size in pixels.
        estimated: True when the values are a guess (neither fov nor focal given).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    estimated: bool = False

    @property
    def K(self) -> np.ndarray:
        """``[3,3]`` float64 intrinsic matrix ``[[fx,0,cx],[0,fy,cy],[0,0,1]]``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_deg(self) -> float:
        """Horizontal field of view ``2 atan(W / (2 fx))`` in degrees."""
        return math.degrees(2 * math.atan(self.width / (2 * self.fx)))

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int, estimated: bool = False) -> Intrinsics:
        """Square pixels, centred principal point, ``fx = W / (2 tan(fov / 2))``."""
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height), estimated)


@dataclass
class DuplicatesInput:
    """What the pose and reconstruction stages start from.

    Attributes:
        image: the photo ``[H,W,3]``, linear radiance, float32.
        masks: instance masks ``[N,H,W]`` bool, N >= 2, each non-empty.
        labels: the label (or file name) each instance came from, ``N`` strings.
        intrinsics: the camera's :class:`Intrinsics`.
        image_path: where the photo was read from.
    """

    image: torch.Tensor
    masks: torch.Tensor
    labels: list[str]
    intrinsics: Intrinsics
    image_path: Path

    @property
    def num_instances(self) -> int:
        return self.masks.shape[0]


def read_photo(path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(linear rgb[H,W,3], alpha[H,W] or None)`` of a PNG/JPEG (sRGB) or ``.hdr`` (linear) file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image {p} does not exist; check the path.")
    try:
        img = read_image(p)
    except UnrenderError as exc:
        raise InputError(f"image {p} could not be read ({exc}); give a PNG, JPEG or HDR file.") from None
    rgb = img[..., :3]
    if p.suffix.lower() != ".hdr":
        rgb = srgb_to_linear(rgb)
    alpha = img[..., 3] if img.shape[-1] == 4 else None
    return rgb.float().contiguous(), alpha


def _label_array(p: Path) -> np.ndarray:
    """Integer labels ``[H,W]`` of a label image, exactly as stored (read with Pillow rather than
    :func:`read_image`, which turns values into [0,1] floats and palette indices into colours)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("P", "L", "I;16", "I;16B", "I;16L", "I", "1"):
                return np.asarray(im).astype(np.int64)
            if im.mode == "LA":
                return np.asarray(im)[..., 0].astype(np.int64)
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"mask file {p} could not be read ({exc}); give an instance-label PNG (0 = background) "
                         f"or a folder of binary mask PNGs.") from None
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _check_size(p: Path, shape: tuple[int, ...], image_shape: tuple[int, int], image_path: Path) -> None:
    if tuple(shape[:2]) != tuple(image_shape):
        raise InputError(f"mask {p} is {shape[1]}x{shape[0]} pixels but the image {image_path} is "
                         f"{image_shape[1]}x{image_shape[0]}; give masks of the image's size.")


def masks_from_label_image(path, image_shape: tuple[int, int], image_path: Path) -> tuple[np.ndarray, list[str]]:
    """Instance masks ``[N,H,W]`` bool of a label image: one per distinct non-zero value, in increasing order."""
    p = Path(path)
    labels = _label_array(p)
    _check_size(p, labels.shape, image_shape, image_path)
    values = [int(v) for v in np.unique(labels) if v != 0]
    masks = np.stack([labels == v for v in values]) if values else np.zeros((0, *labels.shape), bool)
    for v, m in zip(values, masks):
        if m.sum() < MIN_INSTANCE_PIXELS:
            raise InputError(f"instance {v} of mask {p} covers only {int(m.sum())} pixels (an empty instance); "
                             f"relabel it as background (0) or give a larger mask.")
    return masks, [str(v) for v in values]


def masks_from_folder(folder, image_shape: tuple[int, int], image_path: Path) -> tuple[np.ndarray, list[str]]:
    """Instance masks ``[N,H,W]`` bool from a folder of binary images (foreground = grey value > 0.5), name order."""
    d = Path(folder)
    files = sorted(f for f in d.iterdir() if f.suffix.lower() in _MASK_SUFFIXES)
    if not files:
        raise InputError(f"mask folder {d} holds no PNG/JPEG mask files; put one binary mask per instance there.")
    masks = []
    for f in files:
        try:
            a = read_image(f)
        except UnrenderError as exc:
            raise InputError(f"mask file {f} could not be read ({exc}); re-save it as PNG.") from None
        _check_size(f, tuple(a.shape), image_shape, image_path)
        m = (a[..., :3].mean(-1) > 0.5).numpy()
        if m.sum() < MIN_INSTANCE_PIXELS:
            raise InputError(f"mask file {f} is empty ({int(m.sum())} foreground pixels); remove it or draw the "
                             f"instance in white.")
        masks.append(m)
    return np.stack(masks), [f.name for f in files]


def masks_from_alpha(alpha: torch.Tensor, image_path: Path) -> tuple[np.ndarray, list[str]]:
    """Split the foreground ``alpha[H,W] > 0.5`` into connected components (8-connected) ``[K,H,W]``.

    Components smaller than :data:`MIN_INSTANCE_PIXELS` are dropped as noise. Warns that it did so.
    """
    from scipy import ndimage

    fg = (alpha > 0.5).numpy()
    comp, count = ndimage.label(fg, structure=np.ones((3, 3), bool))
    sizes = np.bincount(comp.ravel(), minlength=count + 1)
    keep = [k for k in range(1, count + 1) if sizes[k] >= MIN_INSTANCE_PIXELS]
    masks = np.stack([comp == k for k in keep]) if keep else np.zeros((0, *fg.shape), bool)
    warnings.warn(f"no masks given: split the foreground (alpha) of {image_path} into {len(keep)} instances by "
                  f"connected components; touching copies merge into one, so pass --masks if they touch.",
                  stacklevel=3)
    return masks, [f"component {k}" for k in range(1, len(keep) + 1)]


def make_intrinsics(width: int, height: int, fov: float | None = None, focal: float | None = None) -> Intrinsics:
    """Intrinsics from a horizontal ``fov`` (degrees) or ``focal`` (pixels); neither: :data:`DEFAULT_FOV_DEG`, warned."""
    if fov is not None and focal is not None:
        raise InputError("give either --fov or --focal, not both.")
    if focal is not None:
        if not (math.isfinite(focal) and focal > 0):
            raise InputError(f"focal length must be a positive number of pixels; got {focal}.")
        return Intrinsics(float(focal), float(focal), width / 2.0, height / 2.0, int(width), int(height))
    if fov is not None:
        if not (math.isfinite(fov) and 1.0 < fov < 179.0):
            raise InputError(f"field of view must be between 1 and 179 degrees; got {fov}.")
        return Intrinsics.from_fov(float(fov), width, height)
    warnings.warn(f"no field of view or focal length given: assuming a {DEFAULT_FOV_DEG:g} degree horizontal field of "
                  f"view; pass --fov or --focal if you know the camera.", stacklevel=3)
    return Intrinsics.from_fov(DEFAULT_FOV_DEG, width, height, estimated=True)


def read_duplicates_input(image, masks=None, fov: float | None = None, focal: float | None = None) -> DuplicatesInput:
    """Read one photo of N identical objects with its instance masks (module docstring).

    Args:
        image: photo file (PNG/JPEG sRGB, or .hdr linear); an RGBA file's alpha is used only when ``masks`` is None.
        masks: an instance-label image file, a folder of binary masks, or None (split the alpha channel).
        fov: horizontal field of view in degrees, or
        focal: focal length in pixels (at most one of the two).
    Returns:
        :class:`DuplicatesInput` with ``image[H,W,3]`` (linear) and ``masks[N,H,W]`` (bool, N >= 2).
    Raises:
        InputError: unreadable image or mask, size mismatch, fewer than 2 instances, an empty instance.

    Example:
        >>> data = read_duplicates_input("scene/image.png", "scene/instances.png", fov=40)  # doctest: +SKIP
        >>> data.masks.shape                                                             # doctest: +SKIP
        torch.Size([8, 768, 768])
    """
    image_path = Path(image)
    rgb, alpha = read_photo(image_path)
    shape = (rgb.shape[0], rgb.shape[1])
    if masks is None:
        if alpha is None:
            raise InputError(f"image {image_path} has no alpha channel and no masks were given; pass --masks "
                             f"(an instance-label PNG or a folder of binary masks) or an RGBA image.")
        arr, names = masks_from_alpha(alpha, image_path)
        source = f"the alpha channel of {image_path}"
    else:
        mp = Path(masks)
        if mp.is_dir():
            arr, names = masks_from_folder(mp, shape, image_path)
        elif mp.is_file():
            arr, names = masks_from_label_image(mp, shape, image_path)
        else:
            raise InputError(f"masks {mp} does not exist; give an instance-label PNG or a folder of binary masks.")
        source = str(mp)
    if arr.shape[0] < 2:
        raise InputError(f"{source} holds {arr.shape[0]} instance(s) but duplicates need at least 2; give a mask "
                         f"with one label per copy of the object.")
    intr = make_intrinsics(shape[1], shape[0], fov=fov, focal=focal)
    return DuplicatesInput(rgb, torch.from_numpy(arr), names, intr, image_path)
