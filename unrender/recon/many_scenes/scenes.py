"""Scenes for many-scene learning: find them under a root folder, read them, turn them into rays.

Two layouts are understood (:func:`find_scenes`):

* a folder of NeRF-synthetic scenes, ``ROOT/<scene>/transforms_{train,test}.json`` (what
  ``unrender synth --kind scenes`` writes); the test split is the scene's ``test`` frames;
* DVR's collection layout, ``ROOT/<synset>/<model>/{image,mask}/`` + ``cameras.npz`` (``unrender synth
  --kind collection``); every 8th view (0, 8, 16, ...) is a test view, the others train.

A scene's name is its folder name (the model id for DVR), which names its output folder
``RUN/scenes/<name>/``. Colours stay sRGB as stored (the field learns display colour, as NeRF does) and are
composited over a white background wherever a loss or a metric needs one.

Example:
    >>> sources = find_scenes("scenes_root")                         # doctest: +SKIP
    >>> scene = read_scene(sources[0]); rays = train_rays(scene)     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...cameras import Camera
from ...color import linear_to_srgb
from ...errors import DataError

#: Every ``DVR_TEST_EVERY``-th view of a DVR object is a test view.
DVR_TEST_EVERY = 8


@dataclass
class SceneSource:
    """Where one scene lives: ``name`` (output folder name), ``path`` (its folder), ``layout`` (``blender`` or
    ``dvr``)."""

    name: str
    path: Path
    layout: str


@dataclass
class SceneImages:
    """One scene's posed images (``V`` train and ``T`` test views of ``H x W`` pixels).

    Attributes:
        name: scene name (output folder name).
        train_rgba: ``[V,H,W,4]`` float32, sRGB colour (straight, not premultiplied) and alpha.
        train_camera: ``V`` cameras (OpenGL camera-to-world).
        test_rgba: ``[T,H,W,4]`` float32, as ``train_rgba``.
        test_camera: ``T`` cameras.
        test_names: ``T`` frame names (the test renders are written as ``<name>.png``).
    """

    name: str
    train_rgba: torch.Tensor
    train_camera: Camera
    test_rgba: torch.Tensor
    test_camera: Camera
    test_names: list[str]


@dataclass
class TrainRays:
    """Every training pixel of a scene as a ray (``N = V H W``).

    Attributes:
        origins, directions: ``[N,3]`` world rays (unit directions).
        rgba: ``[N,4]`` target sRGB colour and alpha.
        foreground: ``[F]`` indices of the rays whose alpha > 0.5 (for mask-weighted ray sampling).
        box: ``[2,3]`` the scene box (:func:`scene_box`).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    rgba: torch.Tensor
    foreground: torch.Tensor
    box: torch.Tensor

    def to(self, device) -> TrainRays:
        return TrainRays(*(t.to(device) for t in (self.origins, self.directions, self.rgba, self.foreground,
                                                  self.box)))


def find_scenes(root) -> list[SceneSource]:
    """The scenes under ``root`` (module docstring), sorted by name; a :class:`DataError` if there are none.

    Args:
        root: a folder of NeRF-synthetic scene folders, or a DVR collection root.
    Returns:
        list of :class:`SceneSource`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Scene folder {root} does not exist or is not a folder; check the path.")
    found = [SceneSource(p.name, p, "blender") for p in sorted(root.iterdir())
             if p.is_dir() and (p / "transforms_train.json").is_file()]
    if not found:
        found = [SceneSource(p.parent.name, p.parent, "dvr") for p in sorted(root.glob("*/*/cameras.npz"))]
    if not found:
        raise DataError(f"{root} holds no scenes: expected <scene>/transforms_train.json folders (NeRF-synthetic; "
                        f"`unrender synth --kind scenes` writes them) or <synset>/<model>/cameras.npz (DVR layout).")
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise DataError(f"{root} holds two scenes with the same folder name; scene names must be unique because "
                        f"they name the output folders.")
    return found


def read_scene(source: SceneSource) -> SceneImages:
    """Read one scene's train and test views (module docstring).

    Returns:
        :class:`SceneImages`.
    """
    if source.layout == "blender":
        from ...data.layouts.dataset import read_dataset
        train, test = (read_dataset(source.path, split, layout="blender") for split in ("train", "test"))
        return SceneImages(source.name, train.rgba.float(), train.camera, test.rgba.float(), test.camera,
                           list(test.names))
    from ...data.collection import read_dvr_object
    obj = read_dvr_object(source.path, load_points=False)
    rgba = torch.cat([linear_to_srgb(obj.images.clamp(0, 1)), obj.masks[..., None]], -1)
    test = torch.zeros(len(rgba), dtype=torch.bool)
    test[::DVR_TEST_EVERY] = True
    if bool(test.all()):
        raise DataError(f"{source.path} has {len(rgba)} views; many-scene learning needs at least 2 (one to test).")
    idx = torch.arange(len(rgba))
    return SceneImages(source.name, rgba[~test], obj.camera[idx[~test]], rgba[test], obj.camera[idx[test]],
                       [f"view_{i:03d}" for i in idx[test].tolist()])


def scene_box(camera: Camera, scale: float = 1.0) -> torch.Tensor:
    """A cube around what the cameras look at.

    The centre ``p`` is the least-squares point nearest to all optical axes (camera centre ``c_i``, viewing
    direction ``f_i``): ``sum_i (I - f_i f_i^T) p = sum_i (I - f_i f_i^T) c_i``. The half-size is
    ``scale x mean_i |c_i - p| x tan(fov / 2)`` (the wider of the two fields of view): the half-width of what a
    camera sees at the centre's distance.

    Args:
        camera: ``V >= 1`` cameras.
        scale: multiplier of the half-size.
    Returns:
        ``[2,3]`` box (min corner, max corner), float32.

    Example:
        >>> from unrender.cameras import orbit_poses
        >>> cam = Camera.from_fov(40.0, 64, 64, orbit_poses(8, 2.0))
        >>> box = scene_box(cam); bool(torch.allclose(box[0], -box[1], atol=1e-4))
        True
    """
    c2w = camera.c2w.double()
    centers, forward = c2w[:, :3, 3], -c2w[:, :3, 2]
    proj = torch.eye(3, dtype=c2w.dtype) - forward[:, :, None] * forward[:, None, :]
    lhs, rhs = proj.sum(0), (proj @ centers[..., None]).sum(0)[:, 0]
    if torch.linalg.matrix_rank(lhs) < 3:      # all axes parallel: no single point, take the mean centre
        p = centers.mean(0)
    else:
        p = torch.linalg.solve(lhs, rhs)
    distance = (centers - p).norm(dim=-1).mean()
    tan_half = max(float((camera.width / (2 * camera.fx)).max()), float((camera.height / (2 * camera.fy)).max()))
    half = scale * distance * tan_half
    return torch.stack([p - half, p + half]).float()


def train_rays(scene: SceneImages, box_scale: float = 1.0) -> TrainRays:
    """All training pixels of ``scene`` as rays (see :class:`TrainRays`)."""
    origins, directions = scene.train_camera.rays()
    rgba = scene.train_rgba.reshape(-1, 4).float()
    return TrainRays(origins.reshape(-1, 3).float(), directions.reshape(-1, 3).float(), rgba,
                     torch.nonzero(rgba[:, 3] > 0.5)[:, 0], scene_box(scene.train_camera, box_scale))
