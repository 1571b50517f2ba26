"""Baselines every single-view model must beat: a sphere, the category's mean shape, image retrieval.

All three implement :class:`unrender.singleview.evaluate.Predictor` (``predict(images [B,H,W,4]) ->
list[Mesh]``, meshes in the collection's object frame) and are fitted on a split of a DVR collection
(:func:`unrender.data.collection.read_collection_index`), normally ``"train"``:

* :class:`SphereBaseline` -- the same sphere for every image, centred at the origin (objects are centred),
  radius = the mean distance of the training surfaces' points from the origin;
* :class:`MeanShapeBaseline` -- per category, the mean occupancy of the training meshes on a grid, meshed at
  0.5 (the voxel-wise majority shape); ``predict`` takes the optional ``categories`` keyword (the category
  of each image, which the collection knows) and falls back to the mean over all categories without it;
* :class:`NearestNeighbourBaseline` -- the mesh of the training object whose image is nearest to the input
  in a fixed feature space (downsampled mask + colour, or a fixed randomly-initialised
  :class:`~unrender.singleview.encoders.ImageEncoder`): the retrieval baseline that Tatarchenko et al.
  ("What Do Single-view 3D Reconstruction Networks Learn?", CVPR 2019) found as good as the networks of
  the time.

Example:
    >>> sphere = SphereBaseline.fit("coll")                                   # doctest: +SKIP
    >>> meshes = sphere.predict(torch.zeros(2, 64, 64, 4))                    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checks import float_tensor
from ..errors import DataError, InputError
from ..geometry.primitives import icosphere
from ..mesh import Mesh
from .eval_metrics import ground_truth_points, load_ground_truth, mesh_occupancy

FEATURE_KINDS = ("pixels", "encoder")


def _training_objects(root, split: str) -> tuple[object, list[tuple[str, str]]]:
    from ..data.collection import read_collection_index

    index = read_collection_index(root)
    objects = index.objects(split)
    if not objects:
        raise InputError(f"split {split!r} of {root} lists no objects to fit a baseline on; use another split.")
    return index, objects


def _check_images(images) -> torch.Tensor:
    """``[B,H,W,3|4]`` float -> ``[B,H,W,4]`` (alpha 1 when absent)."""
    images = float_tensor("images", images, "[B,H,W,4] (linear RGB + alpha)", ndims=(4,))
    if images.shape[-1] == 3:
        images = torch.cat([images, torch.ones_like(images[..., :1])], -1)
    if images.shape[-1] != 4:
        raise InputError(f"images must be [B,H,W,4] (linear RGB + alpha); got {tuple(images.shape)}.")
    return images


@dataclass
class SphereBaseline:
    """A sphere of ``radius`` about the origin for every image (module docstring).

    Attributes:
        radius: sphere radius in object units; subdivisions: icosphere level (``20 * 4^s`` faces).

    Example:
        >>> SphereBaseline(radius=0.3).predict(torch.zeros(2, 32, 32, 4))[1].vertices.norm(dim=1).max().item()
        0.30000001192092896
    """

    radius: float
    subdivisions: int = 4

    @classmethod
    def fit(cls, root, split: str = "train", subdivisions: int = 4, points: int = 10_000) -> SphereBaseline:
        """``radius = mean over training objects of mean_p |p|`` for ``points`` surface samples ``p`` per object.

        For a fixed centre, ``r = E|p|`` minimises ``E (|p| - r)^2``: the least-squares sphere about the origin.

        Example:
            >>> SphereBaseline.fit("coll").radius          # doctest: +SKIP
            0.31
        """
        index, objects = _training_objects(root, split)
        radii = [np.linalg.norm(ground_truth_points(load_ground_truth(index.model_dir(c, m)), points, i), axis=1).mean()
                 for i, (c, m) in enumerate(objects)]
        return cls(radius=float(np.mean(radii)), subdivisions=subdivisions)

    def predict(self, images, categories=None) -> list[Mesh]:
        """``images[B,H,W,4]`` -> ``B`` copies of the sphere (the images only set ``B``).

        Example:
            >>> len(SphereBaseline(radius=0.3, subdivisions=1).predict(torch.zeros(3, 16, 16, 4)))
            3
        """
        images = _check_images(images)
        sphere = icosphere(self.subdivisions, self.radius)
        return [Mesh(sphere.vertices.clone(), sphere.faces.clone()) for _ in range(images.shape[0])]


def occupancy_grid_points(resolution: int, bounds: float) -> np.ndarray:
    """``[R^3,3]`` grid points ``-b + (i, j, k) 2b / (R - 1)``, ``i`` slowest (``values.reshape(R, R, R)[i,j,k]``).

    Example:
        >>> occupancy_grid_points(3, 1.0)[[0, 1, 26]].tolist()
        [[-1.0, -1.0, -1.0], [-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]]
    """
    axis = np.linspace(-bounds, bounds, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def mesh_from_occupancy(values: np.ndarray, bounds: float) -> Mesh:
    """Outward-facing mesh of ``{values > level}`` for a mean-occupancy grid ``values[R,R,R]`` sampled at
    :func:`occupancy_grid_points`.

    ``level = 0.5`` (majority), or half the maximum when no grid point reaches 0.5 (objects so varied that no
    voxel is shared by most of them still give their most agreed-on region). The grid is padded with zeros
    so the surface is closed; faces are flipped if the signed volume comes out negative.

    Example:
        >>> v = np.zeros((9, 9, 9)); v[2:7, 2:7, 2:7] = 1.0
        >>> m = mesh_from_occupancy(v, bounds=0.5)
        >>> round(float(m.vertices[:, 0].max()), 4)   # the box ends half-way between grid points 6 and 7
        0.3125
    """
    from skimage.measure import marching_cubes  # imported here: only mesh extraction needs scikit-image

    r = values.shape[0]
    step = 2.0 * bounds / (r - 1)
    top = float(values.max())
    if not top > 0:
        raise InputError("the occupancy grid is empty; the training meshes lie outside the grid bounds.")
    level = 0.5 if top > 0.5 else top / 2
    padded = np.pad(values, 1)
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=(step,) * 3)
    verts = verts - bounds - step  # grid point (1, 1, 1) of the padded grid is (-b, -b, -b)
    tri = verts[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        faces = faces[:, ::-1]
    return Mesh(torch.tensor(verts, dtype=torch.float32), torch.tensor(np.ascontiguousarray(faces), dtype=torch.int64))


@dataclass
class MeanShapeBaseline:
    """The category's mean training shape for every image of that category (module docstring).

    Attributes:
        shapes: category (synset) -> mean-shape mesh.
        overall: mean shape of all training objects (used without or with an unknown category).

    Example:
        >>> mean = MeanShapeBaseline.fit("coll", resolution=48)                          # doctest: +SKIP
        >>> mean.predict(torch.zeros(1, 64, 64, 4), categories=["03001627"])            # doctest: +SKIP
    """

    shapes: dict[str, Mesh]
    overall: Mesh

    @classmethod
    def fit(cls, root, split: str = "train", resolution: int = 48, bounds: float = 0.55) -> MeanShapeBaseline:
        """Mean occupancy of each category's training meshes on an ``R^3`` grid over ``[-b, b]^3``, meshed by
        :func:`mesh_from_occupancy`. Occupancy by :func:`~unrender.singleview.eval_metrics.mesh_occupancy`.
        Needs ``mesh.obj`` in every training object.

        Example:
            >>> MeanShapeBaseline.fit("coll", resolution=32).shapes.keys()   # doctest: +SKIP
            dict_keys(['02691156', '03001627', '04379243'])
        """
        if int(resolution) != resolution or resolution < 8 or not bounds > 0:
            raise InputError(f"need resolution >= 8 and bounds > 0; got {resolution!r}, {bounds!r}.")
        index, objects = _training_objects(root, split)
        grid = occupancy_grid_points(int(resolution), float(bounds))
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for cat, model in objects:
            gt = load_ground_truth(index.model_dir(cat, model))
            if not gt.has_mesh:
                raise DataError(f"{index.model_dir(cat, model)} has no mesh.obj; the mean-shape baseline needs the "
                                f"training meshes (collections made by `unrender synth --kind collection` have them).")
            occ = mesh_occupancy(gt.vertices, gt.faces, grid).astype(np.float64)
            sums[cat] = sums.get(cat, 0.0) + occ
            counts[cat] = counts.get(cat, 0) + 1
        shape = (int(resolution),) * 3
        shapes = {c: mesh_from_occupancy((sums[c] / counts[c]).reshape(shape), bounds) for c in sums}
        overall = mesh_from_occupancy((sum(sums.values()) / sum(counts.values())).reshape(shape), bounds)
        return cls(shapes, overall)

    def predict(self, images, categories=None) -> list[Mesh]:
        """``images[B,H,W,4]`` (+ ``categories``, one synset per image) -> the categories' mean shapes (the
        stored meshes themselves, shared between calls: do not modify them).

        Example:
            >>> from unrender.geometry.primitives import icosphere
            >>> mean = MeanShapeBaseline({"a": icosphere(1, 0.2)}, icosphere(1, 0.3))
            >>> [m.vertices.norm(dim=1).max().item() for m in mean.predict(torch.zeros(2, 16, 16, 4), ["a", "b"])]
            [0.20000000298023224, 0.30000001192092896]
        """
        images = _check_images(images)
        if categories is not None and len(categories) != images.shape[0]:
            raise InputError(f"categories has {len(categories)} entries for {images.shape[0]} images; give one each.")
        cats = categories if categories is not None else [None] * images.shape[0]
        return [self.shapes.get(c, self.overall) for c in cats]


def pixel_features(images, size: int = 16) -> torch.Tensor:
    """``[B,D]`` features of ``images[B,H,W,4]``: area-downsampled to ``size x size``, alpha and colour.

    ``D = 4 size^2``: the alpha channel, then the RGB channels scaled by ``1/sqrt(3)`` so that the mask and
    the colour weigh the same in Euclidean distances.

    Example:
        >>> pixel_features(torch.ones(2, 32, 32, 4), size=8).shape
        torch.Size([2, 256])
    """
    x = _check_images(images).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return torch.cat([x[:, 3].flatten(1), x[:, :3].flatten(1) / 3 ** 0.5], 1)


@dataclass
class NearestNeighbourBaseline:
    """Retrieval: the mesh of the training object with the nearest training image (module docstring).

    Attributes:
        features: ``[N,D]`` features of the training images; owners: ``[N]`` index into ``objects``.
        objects: ``(category, model)`` of each training object; mesh_paths: their ``mesh.obj``.
        feature_kind: ``"pixels"`` (:func:`pixel_features`) or ``"encoder"``; size: pixel-feature resolution.
        encoder: the fixed random :class:`~unrender.singleview.encoders.ImageEncoder` (``"encoder"`` only).
        same_category: retrieve only among training objects of the image's category when categories are given.

    Example:
        >>> nn = NearestNeighbourBaseline.fit("coll", views=4)                       # doctest: +SKIP
    """

    features: torch.Tensor
    owners: torch.Tensor
    objects: list[tuple[str, str]]
    mesh_paths: list[Path]
    feature_kind: str = "pixels"
    size: int = 16
    encoder: torch.nn.Module | None = None
    same_category: bool = False
    _meshes: dict[int, Mesh] = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, root, split: str = "train", features: str = "pixels", views: int | None = None, size: int = 16,
            same_category: bool = False, seed: int = 0) -> NearestNeighbourBaseline:
        """Features of the first ``views`` views (default all) of every training object.

        ``features="encoder"`` builds ``ImageEncoder(in_channels=4)`` with weights drawn from ``seed`` (global
        RNG state untouched) and uses its L2-normalised global feature.

        Example:
            >>> nn = NearestNeighbourBaseline.fit("coll", features="encoder", views=4)   # doctest: +SKIP
        """
        from ..data.collection import read_dvr_object

        if features not in FEATURE_KINDS:
            raise InputError(f"features must be one of {', '.join(FEATURE_KINDS)}; got {features!r}.")
        index, objects = _training_objects(root, split)
        encoder = None
        if features == "encoder":
            from .encoders import ImageEncoder

            with torch.random.fork_rng():
                torch.manual_seed(seed)
                encoder = ImageEncoder(in_channels=4).eval()
        model = cls(torch.zeros(0), torch.zeros(0, dtype=torch.int64), list(objects), [], features, int(size), encoder,
                    same_category)
        feats, owners = [], []
        for i, (cat, name) in enumerate(objects):
            mesh_path = index.model_dir(cat, name) / "mesh.obj"
            if not mesh_path.is_file():
                raise DataError(f"{mesh_path} is missing; the nearest-neighbour baseline returns training meshes and "
                                f"needs every training object's mesh.obj.")
            obj = read_dvr_object(index.model_dir(cat, name), load_points=False)
            n = obj.images.shape[0] if views is None else min(int(views), obj.images.shape[0])
            feats.append(model.image_features(torch.cat([obj.images[:n], obj.masks[:n, ..., None]], -1)))
            owners.append(torch.full((n,), i, dtype=torch.int64))
            model.mesh_paths.append(mesh_path)
        model.features, model.owners = torch.cat(feats), torch.cat(owners)
        return model

    def image_features(self, images) -> torch.Tensor:
        """``[B,D]`` features of ``images[B,H,W,4]`` in this baseline's feature space.

        Example:
            >>> nn = NearestNeighbourBaseline(torch.zeros(0, 64), torch.zeros(0, dtype=torch.int64), [], [], size=4)
            >>> nn.image_features(torch.zeros(2, 16, 16, 4)).shape
            torch.Size([2, 64])
        """
        if self.feature_kind == "pixels":
            return pixel_features(images, self.size)
        with torch.no_grad():
            f = self.encoder(_check_images(images).permute(0, 3, 1, 2)).global_feature
        return torch.nn.functional.normalize(f, dim=1)

    def nearest(self, images, categories=None) -> torch.Tensor:
        """Index into :attr:`objects` of the retrieved training object for each of ``images[B,H,W,4]``: ``[B]``.

        ``argmin_n |f(image) - features[n]|`` (Euclidean), restricted to the image's category when
        ``same_category`` and ``categories`` are given.

        Example:
            >>> f = pixel_features(torch.stack([torch.zeros(8, 8, 4), torch.ones(8, 8, 4)]), size=4)
            >>> nn = NearestNeighbourBaseline(f, torch.tensor([0, 1]), [("a", "m0"), ("b", "m1")], [], size=4)
            >>> nn.nearest(torch.full((1, 8, 8, 4), 0.9)).tolist()
            [1]
        """
        d = torch.cdist(self.image_features(images).double(), self.features.double())
        if self.same_category and categories is not None:
            owner_cat = [self.objects[int(o)][0] for o in self.owners]
            for b, cat in enumerate(categories):
                other = torch.tensor([c != cat for c in owner_cat])
                if not bool(other.all()):  # a category without training objects keeps the unrestricted search
                    d[b, other] = float("inf")
        return self.owners[d.argmin(1)]

    def predict(self, images, categories=None) -> list[Mesh]:
        """``images[B,H,W,4]`` -> the retrieved training meshes (loaded once, then reused).

        Example:
            >>> NearestNeighbourBaseline.fit("coll").predict(torch.rand(1, 64, 64, 4))   # doctest: +SKIP
        """
        from ..io.mesh_files import load_mesh

        out = []
        for k in self.nearest(images, categories).tolist():
            if k not in self._meshes:
                self._meshes[k] = load_mesh(self.mesh_paths[k])
            out.append(self._meshes[k])
        return out
