"""COLMAP sparse reconstructions (``.bin`` and ``.txt``): reader and fixture writer.

Layout (paths relative to the dataset folder)::

    sparse/0/  (or sparse/)   cameras.{bin,txt}, images.{bin,txt}, points3D.{bin,txt} (optional)
    images/                   the images, named as in images.{bin,txt} (names may hold sub-folders)
    masks/ or mask/           optional: ``<name>.png`` (COLMAP's convention, ``masks/a.jpg.png``) or same stem

``cameras``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``. Accepted models: ``SIMPLE_PINHOLE (f cx cy)``,
``PINHOLE (fx fy cx cy)``, and ``SIMPLE_RADIAL (f cx cy k)``, ``RADIAL (f cx cy k1 k2)``,
``OPENCV (fx fy cx cy k1 k2 p1 p2)`` only when every distortion parameter is below 1e-9 in magnitude;
distorted cameras are refused with the advice to run ``colmap image_undistorter``, fisheye and other
models are refused. COLMAP puts the centre of the top-left pixel at (0.5, 0.5), as :class:`Camera` does,
so ``cx, cy`` are used unchanged.

``images``: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then a line of 2D points (ignored). The
quaternion ``q = (w, x, y, z)`` and ``t`` map world to camera, ``X_cam = R(q) X_world + t``, in OpenCV
camera axes (x right, y down, z forward). The reader converts to OpenGL camera-to-world::

    c2w_cv = [[R^T, -R^T t], [0, 1]]          camera centre C = -R^T t
    c2w_gl = c2w_cv @ diag(1, -1, -1, 1)      flip the camera's y and z axes

``points3D``: ``POINT3D_ID X Y Z R G B ERROR TRACK...``; used only for ``bounds``: the per-axis 1st..99th
percentile box of the points (robust to stray points), grown by 5% of its size on each side. Note that
points on the background enlarge it.

Frames are sorted by image name; ``split="test"`` is every 8th of them (0, 8, 16, ..., the LLFF
convention), ``"train"`` the rest, ``"all"`` all.

Example:
    >>> ds = read_colmap("garden", split="train")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...cameras import Camera
from ...errors import DataError, InputError
from .dataset import (MultiViewDataset, check_sizes, find_mask, load_frames, make_camera, mask_dirs_near,
                      opencv_to_opengl, split_indices, write_rgb_and_masks)

#: COLMAP camera model id -> (name, number of parameters), as in COLMAP's ``camera_models.h``.
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
                 8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
                 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16)}
_MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
#: Accepted models: name -> (indices of fx, fy, cx, cy in the parameters, indices of distortion parameters).
_PINHOLE_LIKE = {"SIMPLE_PINHOLE": ((0, 0, 1, 2), ()), "PINHOLE": ((0, 1, 2, 3), ()),
                 "SIMPLE_RADIAL": ((0, 0, 1, 2), (3,)), "RADIAL": ((0, 0, 1, 2), (3, 4)),
                 "OPENCV": ((0, 1, 2, 3), (4, 5, 6, 7))}


@dataclass
class ColmapCamera:
    """One COLMAP camera: ``model`` name, image ``width``/``height`` and the model's ``params``."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class ColmapImage:
    """One registered image: world-to-camera ``qvec`` (w, x, y, z) and ``tvec``, its camera and file name."""

    image_id: int
    qvec: tuple[float, float, float, float]
    tvec: tuple[float, float, float]
    camera_id: int
    name: str


@dataclass
class ColmapModel:
    """A sparse model: cameras by id, images (file order), points ``[P,3]`` float64 (``None`` if absent)."""

    cameras: dict[int, ColmapCamera]
    images: list[ColmapImage]
    points: torch.Tensor | None


# --------------------------------------------------------------------------------------------- reading


def read_colmap(root, split: str = "train", dtype=torch.float32) -> MultiViewDataset:
    """Read a COLMAP dataset folder (see module docstring) as OpenGL cameras in COLMAP's world frame.

    Args:
        root: folder with ``sparse/0/`` (or ``sparse/``) and ``images/``.
        split: ``"train"``, ``"test"`` (every 8th image by name) or ``"all"``.
        dtype: camera dtype.
    Returns:
        :class:`MultiViewDataset`; ``bounds`` from ``points3D`` when it holds points.

    Example:
        >>> ds = read_colmap("garden", "all")  # doctest: +SKIP
    """
    root = Path(root)
    sparse = next((d for d in (root / "sparse" / "0", root / "sparse")
                   if any((d / f"cameras.{e}").is_file() for e in ("bin", "txt"))), None)
    if sparse is None:
        raise DataError(f"{root} has no sparse/0/cameras.bin, sparse/0/cameras.txt or sparse/cameras.*; "
                        f"point at the folder that holds COLMAP's sparse/ output.")
    model = read_colmap_model(sparse)
    cam_file = next(sparse / f"cameras.{e}" for e in ("bin", "txt") if (sparse / f"cameras.{e}").is_file())
    if not model.images:
        raise DataError(f"{sparse} registers no images; run COLMAP's mapper first.")
    images = sorted(model.images, key=lambda im: im.name)
    intrinsics = {}
    for im in images:
        if im.camera_id not in model.cameras:
            raise DataError(f"image {im.name} in {sparse} uses camera {im.camera_id}, which the cameras file "
                            f"does not define; re-export the model.")
        intrinsics[im.camera_id] = _pinhole(model.cameras[im.camera_id], im.camera_id, cam_file)
    sizes = {(model.cameras[i].width, model.cameras[i].height) for i in intrinsics}
    if len(sizes) > 1:
        raise DataError(f"{sparse} holds cameras of several image sizes {sorted(sizes)}; one dataset needs one "
                        f"image size, so undistort/resize the images to a common size.")
    (width, height), = sizes
    images = [images[i] for i in split_indices(len(images), split, sparse)]
    poses = torch.stack([colmap_to_c2w(im.qvec, im.tvec, f"{sparse} image {im.name}") for im in images])
    folder, masks = root / "images", mask_dirs_near(root)
    files = [folder / im.name for im in images]
    for f in files:
        if not f.is_file():
            raise DataError(f"Image file {f} (registered in {sparse}) does not exist; put the images in "
                            f"{folder}.")
    rgba, has_masks = load_frames(files, [find_mask(masks, im.name) for im in images])
    check_sizes(files, width, height, rgba, cam_file)
    bounds = _robust_bounds(model.points)
    intr = torch.tensor([intrinsics[im.camera_id] for im in images], dtype=torch.float64)
    camera = make_camera(poses, *intr.unbind(-1), width, height, bounds, dtype)
    names = [str(Path(im.name).with_suffix("")) for im in images]
    return MultiViewDataset(rgba, camera, names, files, split, bounds, has_masks, "colmap")


def read_colmap_model(folder) -> ColmapModel:
    """Read ``cameras``, ``images`` and (optional) ``points3D`` from ``folder``, ``.bin`` preferred over ``.txt``.

    Example:
        >>> model = read_colmap_model("garden/sparse/0")  # doctest: +SKIP
        >>> model.cameras[1].model                        # doctest: +SKIP
        'PINHOLE'
    """
    folder = Path(folder)

    def pick(stem):
        for ext, reader in (("bin", _BIN), ("txt", _TXT)):
            if (folder / f"{stem}.{ext}").is_file():
                return folder / f"{stem}.{ext}", reader
        return None, None

    cam_file, cam_reader = pick("cameras")
    img_file, img_reader = pick("images")
    if cam_file is None or img_file is None:
        raise DataError(f"{folder} needs cameras.bin/.txt and images.bin/.txt; re-export the COLMAP model.")
    pts_file, pts_reader = pick("points3D")

    def parse(reader, path):
        try:
            return reader(path)
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise DataError(f"COLMAP model file {path} is truncated or malformed ({exc}); re-export the "
                            f"model.") from None

    cameras = parse(cam_reader["cameras"], cam_file)
    images = parse(img_reader["images"], img_file)
    points = parse(pts_reader["points3D"], pts_file) if pts_file is not None else None
    return ColmapModel(cameras, images, points)


def _pinhole(cam: ColmapCamera, camera_id: int, source) -> tuple[float, float, float, float]:
    where = f"camera {camera_id} in {source}"
    if cam.model not in _PINHOLE_LIKE:
        raise DataError(f"{where} uses model {cam.model}, which is not a pinhole model (fisheye or non-linear); "
                        f"run `colmap image_undistorter` to get PINHOLE images and use its output folder.")
    (ifx, ify, icx, icy), distortion = _PINHOLE_LIKE[cam.model]
    distortion_values = [cam.params[k] for k in distortion]
    if any(abs(v) >= 1e-9 for v in distortion_values):
        raise DataError(f"{where} uses model {cam.model} with non-zero distortion {distortion_values}; unrender "
                        f"needs undistorted pinhole images, so run `colmap image_undistorter` and point at its "
                        f"output folder.")
    fx, fy, cx, cy = (cam.params[i] for i in (ifx, ify, icx, icy))
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0 or fy <= 0:
        raise DataError(f"{where} has invalid intrinsics fx={fx}, fy={fy}, cx={cx}, cy={cy}; re-export the model.")
    return fx, fy, cx, cy


def _robust_bounds(points: torch.Tensor | None) -> torch.Tensor | None:
    if points is None or points.shape[0] < 4:  # too few points to say where the object is
        return None
    q = torch.quantile(points, torch.tensor([0.01, 0.99], dtype=points.dtype), dim=0)
    margin = 0.05 * (q[1] - q[0])
    return torch.stack([q[0] - margin, q[1] + margin])


def colmap_to_c2w(qvec, tvec, what: str = "pose") -> torch.Tensor:
    """OpenGL camera-to-world ``[4,4]`` float64 from COLMAP's world-to-camera ``qvec (w,x,y,z)``, ``tvec``.

    ``c2w = [[R^T, -R^T t], [0, 1]] @ diag(1, -1, -1, 1)`` with ``R = R(q / |q|)``.

    Example:
        >>> colmap_to_c2w((1, 0, 0, 0), (0, 0, 2))[:3, 3]
        tensor([ 0.,  0., -2.], dtype=torch.float64)
    """
    q = torch.as_tensor(qvec, dtype=torch.float64)
    t = torch.as_tensor(tvec, dtype=torch.float64)
    if not (torch.isfinite(q).all() and torch.isfinite(t).all()) or float(q.norm()) < 1e-12:
        raise DataError(f"{what} has a NaN, infinite or zero quaternion/translation; re-export the model.")
    R = quaternion_to_rotation(q)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return opencv_to_opengl(c2w)


def quaternion_to_rotation(q: torch.Tensor) -> torch.Tensor:
    """Rotation ``[3,3]`` of quaternion ``q = (w, x, y, z)`` (normalised first), Hamilton convention."""
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                         [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                         [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]], dtype=torch.float64)


def rotation_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Quaternion ``(w, x, y, z)``, ``w >= 0``, of the rotation nearest to ``R[3,3]`` (SVD, then Shepperd).

    Example:
        >>> rotation_to_quaternion(torch.eye(3, dtype=torch.float64))
        tensor([1., 0., 0., 0.], dtype=torch.float64)
    """
    u, _, vt = torch.linalg.svd(R.double())
    R = u @ torch.diag(torch.tensor([1.0, 1.0, float(torch.det(u @ vt))], dtype=torch.float64)) @ vt
    m = R.tolist()
    tr = m[0][0] + m[1][1] + m[2][2]
    # Shepperd: divide by the largest of the four candidate components to stay well conditioned.
    if tr > 0:
        s = 2 * math.sqrt(tr + 1)
        q = [s / 4, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    elif m[0][0] > m[1][1] and m[0][0] > m[2][2]:
        s = 2 * math.sqrt(1 + m[0][0] - m[1][1] - m[2][2])
        q = [(m[2][1] - m[1][2]) / s, s / 4, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    elif m[1][1] > m[2][2]:
        s = 2 * math.sqrt(1 + m[1][1] - m[0][0] - m[2][2])
        q = [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, s / 4, (m[1][2] + m[2][1]) / s]
    else:
        s = 2 * math.sqrt(1 + m[2][2] - m[0][0] - m[1][1])
        q = [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, s / 4]
    q = torch.tensor(q, dtype=torch.float64)
    return q if q[0] >= 0 else -q


# ------------------------------------------------------------------------------------------ text files


def _data_lines(path: Path):
    """(line number, stripped text) of every non-comment line, blank lines included (images.txt needs them)."""
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.lstrip().startswith("#"):
            yield k, line.strip()


def _txt_cameras(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for k, line in _data_lines(path):
        if not line:
            continue
        tok = line.split()
        try:
            model = tok[1]
            nparams = _MODEL_IDS[model][1] if model in _MODEL_IDS else len(tok) - 4
            if len(tok) != 4 + nparams:
                raise ValueError(f"expected {4 + nparams} fields")
            cams[int(tok[0])] = ColmapCamera(model, int(tok[2]), int(tok[3]), tuple(float(v) for v in tok[4:]))
        except (ValueError, IndexError) as exc:
            raise DataError(f"{path} line {k} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...' ({exc}); "
                            f"fix the line.") from None
    return cams


def _txt_images(path: Path) -> list[ColmapImage]:
    images, expect_points = [], False
    for k, line in _data_lines(path):
        if expect_points:  # the POINTS2D line that follows every image line, possibly blank
            expect_points = False
            continue
        if not line:
            continue
        tok = line.split(None, 9)
        try:
            v = [float(x) for x in tok[1:8]]
            images.append(ColmapImage(int(tok[0]), tuple(v[:4]), tuple(v[4:7]), int(tok[8]), tok[9]))
        except (ValueError, IndexError):
            raise DataError(f"{path} line {k} is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'; fix the "
                            f"line (each image line is followed by one line of 2D points, maybe empty).") from None
        expect_points = True
    return images


def _txt_points(path: Path) -> torch.Tensor:
    xyz = []
    for k, line in _data_lines(path):
        if not line:
            continue
        try:
            xyz.append([float(v) for v in line.split()[1:4]])
        except ValueError:
            raise DataError(f"{path} line {k} is not 'POINT3D_ID X Y Z R G B ERROR TRACK...'; fix it.") from None
    return torch.tensor(xyz, dtype=torch.float64).reshape(-1, 3)


# ---------------------------------------------------------------------------------------- binary files


class _Reader:
    """Little-endian cursor over a COLMAP binary file; errors name the file."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def read(self, fmt: str):
        try:
            out = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error:
            raise ValueError(f"{self.path.name} ends early at byte {self.pos}") from None
        self.pos += struct.calcsize("<" + fmt)
        return out

    def string(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ValueError(f"{self.path.name} has an unterminated image name at byte {self.pos}")
        s = self.data[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return s


def _bin_cameras(path: Path) -> dict[int, ColmapCamera]:
    r, cams = _Reader(path), {}
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, w, h = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DataError(f"{path} uses unknown camera model id {model_id}; re-export with a standard model.")
        name, n = CAMERA_MODELS[model_id]
        cams[cam_id] = ColmapCamera(name, w, h, r.read(f"{n}d"))
    return cams


def _bin_images(path: Path) -> list[ColmapImage]:
    r, images = _Reader(path), []
    for _ in range(r.read("Q")[0]):
        image_id, qw, qx, qy, qz, tx, ty, tz, cam_id = r.read("idddddddi")
        name = r.string()
        num_points2d = r.read("Q")[0]
        r.pos += 24 * num_points2d  # 2D points (x, y as double, point3D id as int64) are not needed
        images.append(ColmapImage(image_id, (qw, qx, qy, qz), (tx, ty, tz), cam_id, name))
    if r.pos > len(r.data):
        raise ValueError(f"{path.name} ends early")
    return images


def _bin_points(path: Path) -> torch.Tensor:
    r = _Reader(path)
    n = r.read("Q")[0]
    xyz = np.empty((n, 3), dtype=np.float64)
    for i in range(n):
        xyz[i] = r.read("Qddd")[1:]
        r.pos += 3 + 8  # colour (3 x uint8) and reprojection error (double)
        track_length = r.read("Q")[0]
        r.pos += 8 * track_length  # track: (image id, point2D index) as two int32
    return torch.from_numpy(xyz)


_TXT = {"cameras": _txt_cameras, "images": _txt_images, "points3D": _txt_points}
_BIN = {"cameras": _bin_cameras, "images": _bin_images, "points3D": _bin_points}


# --------------------------------------------------------------------------------------------- writing


def write_colmap(out, camera: Camera, names, rgba, has_masks: bool = True, binary: bool = False,
                 points=None) -> list[Path]:
    """Write a COLMAP dataset: ``sparse/0/{cameras,images,points3D}.{txt|bin}``, ``images/<name>.png`` (RGB)
    and, when ``has_masks``, ``masks/<name>.png.png`` (alpha as grey). Returns the files written.

    Cameras are PINHOLE (one per distinct intrinsics); poses are the inverse of the reader's conversion,
    ``R = (c2w_gl @ diag(1,-1,-1,1))[:3,:3]^T``, ``t = -R C``. ``points[P,3]`` (optional) go to
    ``points3D`` with empty tracks.

    Args:
        camera: ``N`` cameras; names: ``N`` frame names; rgba: ``[N,H,W,4]`` sRGB colour + alpha in [0,1].

    Example:
        >>> write_colmap("out", ds.camera, ds.names, ds.rgba, binary=True)  # doctest: +SKIP
    """
    names = [str(n) for n in names]
    if len(camera) != len(names) or torch.as_tensor(rgba).shape[0] != len(names):
        raise InputError(f"need one camera and one image per name; got {len(camera)} cameras, {len(names)} names "
                         f"and {torch.as_tensor(rgba).shape[0]} images.")
    root, sparse = Path(out), Path(out) / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    file_names = [f"{n}.png" for n in names]
    written = write_rgb_and_masks(root / "images", file_names, torch.as_tensor(rgba),
                                  root / "masks" if has_masks else None, [f + ".png" for f in file_names])
    cam_ids, cams, images = {}, [], []
    c2w_cv = opencv_to_opengl(camera.c2w.detach().cpu().double())
    for i, name in enumerate(file_names):
        key = tuple(float(getattr(camera, k)[i]) for k in ("fx", "fy", "cx", "cy"))
        if key not in cam_ids:
            cam_ids[key] = len(cam_ids) + 1
            cams.append((cam_ids[key], key))
        R = c2w_cv[i, :3, :3].T
        t = -R @ c2w_cv[i, :3, 3]
        images.append((i + 1, rotation_to_quaternion(R).tolist(), t.tolist(), cam_ids[key], name))
    pts = torch.zeros(0, 3, dtype=torch.float64) if points is None else torch.as_tensor(points, dtype=torch.float64)
    writer = _write_bin if binary else _write_txt
    written += writer(sparse, cams, images, pts.reshape(-1, 3).tolist(), camera.width, camera.height)
    return written


def _write_txt(sparse: Path, cams, images, points, w: int, h: int) -> list[Path]:
    cam_lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                 f"# Number of cameras: {len(cams)}"]
    cam_lines += [f"{cid} PINHOLE {w} {h} " + " ".join(repr(v) for v in key) for cid, key in cams]
    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                 f"# Number of images: {len(images)}, mean observations per image: 0"]
    for iid, q, t, cid, name in images:
        img_lines += [" ".join([str(iid), *(repr(v) for v in q + t), str(cid), name]), ""]
    pt_lines = ["# 3D point list with one line of data per point:",
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    pt_lines += [f"{k + 1} {p[0]!r} {p[1]!r} {p[2]!r} 128 128 128 0" for k, p in enumerate(points)]
    files = []
    for stem, lines in (("cameras", cam_lines), ("images", img_lines), ("points3D", pt_lines)):
        f = sparse / f"{stem}.txt"
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(f)
    return files


def _write_bin(sparse: Path, cams, images, points, w: int, h: int) -> list[Path]:
    cam_bytes = struct.pack("<Q", len(cams)) + b"".join(
        struct.pack("<iiQQ4d", cid, _MODEL_IDS["PINHOLE"][0], w, h, *key) for cid, key in cams)
    img_bytes = struct.pack("<Q", len(images)) + b"".join(
        struct.pack("<i7di", iid, *q, *t, cid) + name.encode("utf-8") + b"\x00" + struct.pack("<Q", 0)
        for iid, q, t, cid, name in images)
    pt_bytes = struct.pack("<Q", len(points)) + b"".join(
        struct.pack("<Q3d3BdQ", k + 1, *p, 128, 128, 128, 0.0, 0) for k, p in enumerate(points))
    files = []
    for stem, data in (("cameras", cam_bytes), ("images", img_bytes), ("points3D", pt_bytes)):
        f = sparse / f"{stem}.bin"
        f.write_bytes(data)
        files.append(f)
    return files
