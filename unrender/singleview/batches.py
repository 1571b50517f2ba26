"""Torch datasets over one split of a DVR collection, as the single-view models train on them.

Sample ``i`` of a split with ``n`` objects belongs to object ``i mod n`` (so that any prefix of the samples,
e.g. a capped validation set, covers as many objects as possible); an epoch holds ``samples_per_object``
samples per object. Every random draw of sample ``i`` comes from ``numpy.random.default_rng([seed, e, i])``
with ``e = epoch + 1`` (training; call :meth:`set_epoch`) or ``e = 0`` (``fixed_views=True``, validation: the
same draws every epoch), so a sample is a pure function of ``(seed, epoch, i)`` -- the same in every
process, in every DataLoader worker, and after ``--resume``.

* :class:`DIBRSamples` (DIB-R's setting): the input image of a random view and ``K = target_views`` views
  to render the prediction into -- the input view itself plus ``K - 1`` other views of the object drawn
  without replacement -- with their cameras, masks and colours.
* :class:`ImplicitSamples` (LIST's setting): the input image of a random view, ``query_points`` SDF samples
  drawn from the object's cached LIST-style samples (:func:`unrender.geometry.sdf_samples.cached_sdf_samples`
  of its ``mesh.obj``), ``surface_points`` points of ``pointcloud.npz`` and the input view's camera.

Images stay at the collection's resolution: linear RGB as stored (composited over the background), channels
first ``[3,H,W]`` for the encoder. Cameras travel as tensors (``c2w [K,4,4]``, ``intrinsics [K,4]`` =
``fx, fy, cx, cy``) so that the default ``collate`` can batch them; :func:`batch_cameras` rebuilds a
:class:`~unrender.cameras.Camera` of ``B K`` views, sample-major.

Example:
    >>> ds = DIBRSamples("coll", "train", samples_per_object=2)          # doctest: +SKIP
    >>> item = ds[0]; item["image"].shape, item["masks"].shape            # doctest: +SKIP
    (torch.Size([3, 64, 64]), torch.Size([2, 64, 64]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..cameras import Camera
from ..data.collection import read_collection_index, read_dvr_object
from ..errors import DataError, InputError
from ..geometry.sdf_samples import SDFSamples, cached_sdf_samples

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class CollectionSamples(Dataset):
    """Objects of one collection split with seeded, epoch-dependent sampling (module docstring).

    Args:
        root: collection folder (DVR layout).
        split: ``train``, ``val``, ``test`` or ``all``.
        samples_per_object: samples per object and epoch.
        seed: seed of every random draw.
        preload: read every object's views once and keep them in memory; else read the needed views per sample.
        max_samples: cap on ``len(self)`` (None: no cap).
        fixed_views: draw the same views every epoch (validation).
        load_points: also read ``pointcloud.npz``.
    """

    def __init__(self, root, split: str, samples_per_object: int = 1, seed: int = 0, preload: bool = True,
                 max_samples: int | None = None, fixed_views: bool = False, load_points: bool = False):
        self.root = Path(root)
        index = read_collection_index(self.root)
        self.objects = index.objects(split)
        if not self.objects:
            raise DataError(f"{self.root} lists no object in its {split} split ({split}.lst files); add objects "
                            f"or synthesize a collection with more objects per category.")
        if samples_per_object < 1:
            raise InputError(f"samples_per_object must be >= 1; got {samples_per_object}.")
        self.dirs = [index.model_dir(c, m) for c, m in self.objects]
        self.split, self.samples_per_object, self.seed = split, int(samples_per_object), int(seed)
        self.max_samples, self.fixed_views, self.load_points = max_samples, fixed_views, load_points
        self.epoch = 0
        self._surface: dict[int, torch.Tensor] = {}
        first = read_dvr_object(self.dirs[0], views=[0], load_points=False)
        self.height, self.width = int(first.images.shape[1]), int(first.images.shape[2])
        self.near, self.far = float(first.camera.near), float(first.camera.far)
        self._view_counts: dict[int, int] = {}
        self._preloaded = [self._read(i) for i in range(len(self.dirs))] if preload else None

    def __len__(self) -> int:
        n = len(self.dirs) * self.samples_per_object
        return n if self.max_samples is None else min(n, int(self.max_samples))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (ignored with ``fixed_views``)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch (module docstring)."""
        return np.random.default_rng([self.seed, 0 if self.fixed_views else self.epoch + 1, int(index)])

    def object_of(self, index: int) -> int:
        """Object number of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range 0 .. {len(self) - 1}")
        return index % len(self.dirs)

    def _read(self, obj: int, views=None):
        o = read_dvr_object(self.dirs[obj], views=views, load_points=self.load_points)
        if o.images.shape[1:3] != (self.height, self.width):
            raise DataError(f"{self.dirs[obj]} has {o.images.shape[2]}x{o.images.shape[1]} images but "
                            f"{self.dirs[0]} has {self.width}x{self.height}; every object of a collection must "
                            f"have one image size.")
        if views is None:
            self._view_counts[obj] = o.images.shape[0]
        return o

    def num_views(self, obj: int) -> int:
        """Views ``V`` of object ``obj`` (counted from its ``image/`` folder when not preloaded)."""
        if obj not in self._view_counts:
            folder = self.dirs[obj] / "image"
            n = sum(1 for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else 0
            if n == 0:
                raise DataError(f"{folder} holds no image; every object needs image/0000.png ...")
            self._view_counts[obj] = n
        return self._view_counts[obj]

    def views_of(self, obj: int, views: list[int]):
        """``(images [k,H,W,3] linear, masks [k,H,W], Camera of k views, points [P,3] or None)`` of one object."""
        if self._preloaded is not None:
            o = self._preloaded[obj]
            idx = torch.as_tensor(views, dtype=torch.int64)
            return o.images[idx], o.masks[idx], o.camera[idx], o.points
        o = self._read(obj, views)
        return o.images, o.masks, o.camera, o.points

    def _input_view(self, rng: np.random.Generator, obj: int) -> int:
        return int(rng.integers(self.num_views(obj)))

    def surface_sample(self, obj: int, points, n: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` ground-truth surface points ``[n,3]`` of object ``obj``, drawn (with replacement) from its
        ``pointcloud.npz`` ``points``, or, without one, from 30,000 area-weighted samples of its ``mesh.obj``."""
        if points is None:
            if obj not in self._surface:  # sampled once per object
                from ..geometry.sdf_samples import sample_surface
                from ..io.mesh_files import load_mesh

                path = self.dirs[obj] / "mesh.obj"
                if not path.is_file():
                    raise DataError(f"{self.dirs[obj]} has neither pointcloud.npz nor mesh.obj: its surface is "
                                    f"unknown. Add one of them (or validate DIB-R by iou: best_metric=iou).")
                mesh = load_mesh(path)
                gen = torch.Generator().manual_seed(self.seed)
                self._surface[obj] = sample_surface(mesh.vertices, mesh.faces, 30_000, gen)[0].float()
            points = self._surface[obj]
        return points[torch.from_numpy(rng.integers(0, points.shape[0], n))].float()


def _camera_tensors(cam: Camera) -> dict[str, torch.Tensor]:
    return {"c2w": cam.c2w.float(), "intrinsics": torch.stack([cam.fx, cam.fy, cam.cx, cam.cy], -1).float()}


class DIBRSamples(CollectionSamples):
    """DIB-R training samples: input view + ``target_views`` rendered views (module docstring).

    Each item is a dict: ``image [3,H,W]`` (the input view, linear RGB), ``masks [K,H,W]``, ``rgb [K,H,W,3]``
    (view 0 = the input view), ``c2w [K,4,4]``, ``intrinsics [K,4]``, ``object`` and ``view`` (ints); with
    ``surface_points = P > 0`` also ``surface [P,3]``, ground-truth surface points (:meth:`surface_sample`), for the
    validation Chamfer distance.

    Example:
        >>> ds = DIBRSamples("coll", "train", target_views=2)             # doctest: +SKIP
        >>> ds[0]["rgb"].shape                                             # doctest: +SKIP
        torch.Size([2, 64, 64, 3])
    """

    def __init__(self, root, split: str, target_views: int = 2, input_shift: int = 0, input_brightness: float = 0.0,
                 background: float = 1.0, surface_points: int = 0, **kwargs):
        if target_views < 1:
            raise InputError(f"target_views must be >= 1; got {target_views}.")
        if input_shift < 0 or not 0.0 <= input_brightness < 1.0:
            raise InputError(f"input_shift must be >= 0 and input_brightness in [0, 1); got {input_shift}, "
                             f"{input_brightness}.")
        self.target_views = int(target_views)
        self.input_shift, self.input_brightness, self.background = int(input_shift), float(input_brightness), background
        self.surface_points = int(surface_points)
        if self.surface_points > 0:
            kwargs["load_points"] = True
        super().__init__(root, split, **kwargs)

    def __getitem__(self, index: int) -> dict:
        obj = self.object_of(index)
        rng = self.rng(index)
        first = self._input_view(rng, obj)
        others = [v for v in range(self.num_views(obj)) if v != first] or [first]
        extra = rng.choice(others, size=self.target_views - 1, replace=len(others) < self.target_views - 1)
        views = [first, *(int(v) for v in extra)]
        images, masks, cam, points = self.views_of(obj, views)
        image = images[0].permute(2, 0, 1).contiguous()
        if self.input_shift or self.input_brightness:
            image = jitter_input(image, masks[0], rng, self.input_shift, self.input_brightness, self.background)
        item = {"image": image, "masks": masks, "rgb": images, **_camera_tensors(cam), "object": obj, "view": first}
        if self.surface_points > 0:
            item["surface"] = self.surface_sample(obj, points, self.surface_points, rng)
        return item


def jitter_input(image: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator, shift: int, brightness: float,
                 background: float = 1.0) -> torch.Tensor:
    """The input view ``image [3,H,W]`` (composited over ``background``) with its object's colours scaled by
    ``f ~ U[1 - brightness, 1 + brightness]`` and then moved by ``(dx, dy) ~ U{-shift..shift}^2`` pixels, the
    uncovered border filled with ``background``. Only the network's input changes (targets and cameras do
    not), so the network learns to ignore small framing and exposure changes: a regulariser.

    Example:
        >>> img = torch.ones(3, 8, 8); img[:, 2:4, 2:4] = 0.5
        >>> m = (img[0] < 1).float()
        >>> out = jitter_input(img, m, np.random.default_rng(0), 2, 0.0)
        >>> float(out.min()), int((out[0] < 1).sum())
        (0.5, 4)
    """
    if brightness > 0:
        f = float(rng.uniform(1.0 - brightness, 1.0 + brightness))
        m = mask[None].to(image)
        premultiplied = image - background * (1 - m)  # colour x coverage (the image is composited over background)
        image = torch.minimum((premultiplied * f).clamp(min=0), m) + background * (1 - m)
    if shift > 0:
        dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
        h, w = image.shape[1:]
        out = torch.full_like(image, background)
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            image[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        image = out
    return image


class ImplicitSamples(CollectionSamples):
    """LIST-style training samples: input view + SDF queries + surface points (module docstring).

    Each item is a dict: ``image [3,H,W]``, ``points [Q,3]`` and ``sdf [Q]`` (negative inside), ``surface
    [S,3]``, ``c2w [1,4,4]`` and ``intrinsics [1,4]`` of the input view, ``object`` and ``view`` (ints).

    Args:
        root, split: as :class:`CollectionSamples`.
        cache_dir: folder of the cached SDF samples (see :func:`cached_sdf_samples`).
        sdf_samples: samples drawn (once) per mesh.
        query_points, surface_points: per item.
        **kwargs: the other :class:`CollectionSamples` arguments.

    Example:
        >>> ds = ImplicitSamples("coll", "train", cache_dir="run/sdf_cache", query_points=512)   # doctest: +SKIP
        >>> ds[0]["points"].shape                                                                # doctest: +SKIP
        torch.Size([512, 3])
    """

    def __init__(self, root, split: str, cache_dir, sdf_samples: int = 100_000, query_points: int = 2048,
                 surface_points: int = 1024, query_mix: tuple[float, ...] = (), **kwargs):
        if min(sdf_samples, query_points, surface_points) < 1:
            raise InputError("sdf_samples, query_points and surface_points must be >= 1; got "
                             f"{sdf_samples}, {query_points}, {surface_points}.")
        self.cache_dir = Path(cache_dir)
        self.sdf_samples, self.query_points = int(sdf_samples), int(query_points)
        self.surface_points = int(surface_points)
        self.query_mix = tuple(float(x) for x in query_mix)
        if self.query_mix and (any(x < 0 for x in self.query_mix) or not sum(self.query_mix) > 0):
            raise InputError(f"query_mix must be non-negative shares with a positive sum; got {query_mix}.")
        kwargs["load_points"] = True
        super().__init__(root, split, **kwargs)
        for d in self.dirs:
            if not (d / "mesh.obj").is_file():
                raise DataError(f"{d / 'mesh.obj'} is missing; implicit training draws its SDF samples from each "
                                f"object's watertight mesh.obj (collections from `unrender synth --kind collection` "
                                f"have one).")
        self._sdf: list[SDFSamples] | None = None

    def prepare_cache(self) -> None:
        """Compute (or load) every object's SDF samples, so that later reads hit the cache; keeps them in memory
        when preloading. Run it in one process before the others read (the cache files are written atomically,
        so concurrent writers would only duplicate work)."""
        samples = [self._samples(i) for i in range(len(self.dirs))]
        if self._preloaded is not None:
            self._sdf = samples

    def _samples(self, obj: int) -> SDFSamples:
        if self._sdf is not None:
            return self._sdf[obj]
        return cached_sdf_samples(self.dirs[obj] / "mesh.obj", self.cache_dir, self.sdf_samples, seed=self.seed)

    def _query_indices(self, samples: SDFSamples, rng) -> np.ndarray:
        """``query_points`` indices into ``samples``: uniform over them, or ``query_mix[k]`` of them from group ``k``
        (shells, then uniform) so that the rare far-field samples get their say in every step."""
        n = samples.points.shape[0]
        if not self.query_mix:
            return rng.integers(0, n, self.query_points)
        group = samples.group.numpy()
        mix = np.asarray(self.query_mix[:int(group.max()) + 1])
        counts = np.floor(mix / mix.sum() * self.query_points).astype(np.int64)
        counts[int(np.argmax(mix))] += self.query_points - counts.sum()
        picks = []
        for k, c in enumerate(counts):
            members = np.flatnonzero(group == k)
            if c > 0 and members.size:
                picks.append(members[rng.integers(0, members.size, c)])
        idx = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        if idx.size < self.query_points:  # a group absent from this object's samples: fill uniformly
            idx = np.concatenate([idx, rng.integers(0, n, self.query_points - idx.size)])
        return idx

    def __getitem__(self, index: int) -> dict:
        obj = self.object_of(index)
        rng = self.rng(index)
        view = self._input_view(rng, obj)
        images, _, cam, points = self.views_of(obj, [view])
        samples = self._samples(obj)
        q = torch.from_numpy(self._query_indices(samples, rng))
        surface = self.surface_sample(obj, points, self.surface_points, rng)
        return {"image": images[0].permute(2, 0, 1).contiguous(), "points": samples.points[q].float(),
                "sdf": samples.sdf[q].float(), "surface": surface, **_camera_tensors(cam),
                "object": obj, "view": view}


def batch_cameras(batch: dict, width: int, height: int, near: float = 0.05, far: float = 100.0,
                  device=None) -> Camera:
    """Camera of the ``B K`` views of a collated batch (``c2w [B,K,4,4]``, ``intrinsics [B,K,4]``), sample-major:
    camera ``b K + k`` is view ``k`` of sample ``b`` (the order :func:`unrender.singleview.dibr_losses` expects).

    Example:
        >>> b = {"c2w": torch.eye(4).expand(2, 3, 4, 4), "intrinsics": torch.tensor([32., 32, 16, 16]).expand(2, 3, 4)}
        >>> len(batch_cameras(b, 32, 32))
        6
    """
    c2w = batch["c2w"].reshape(-1, 4, 4).to(device)
    k = batch["intrinsics"].reshape(-1, 4).to(device)
    return Camera(c2w, k[:, 0], k[:, 1], k[:, 2], k[:, 3], int(width), int(height), near, far)
