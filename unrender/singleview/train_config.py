"""Configuration of single-view training: typed dataclasses, named presets, ``key=value`` overrides.

    cfg = preset("fast", model="implicit")                  # or "default", "quality"
    cfg = apply_overrides(cfg, ["epochs=5", "implicit.query_points=1024"])

Every field has a docstring; ``unrender train singleview --set KEY=VALUE`` reaches any of them (the model
sections with a dot: ``dibr.laplacian=10``). The full config of a run is written to ``RUN/config.json`` and
stored in every checkpoint, so that ``predict`` rebuilds exactly the trained network.

Example:
    >>> cfg = apply_overrides(preset("fast", model="dibr"), ["epochs=3", "dibr.target_views=3"])
    >>> cfg.epochs, cfg.dibr.target_views, cfg.dibr.widths
    (3, 3, (8, 16, 32, 64, 128))
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..config_overrides import apply_overrides as override_fields
from ..config_overrides import dataclass_from_dict
from ..errors import InputError
from ..schedules import cosine_decay
from .symmetry import SYMMETRY_CHOICES

MODELS = ("dibr", "implicit")
PRESETS = ("fast", "default", "quality")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class DIBRConfig:
    """DIB-R mesh predictor (:class:`unrender.singleview.DIBRPredictor`) and its losses."""

    subdivisions: int = 3
    """Icosphere subdivisions of the template (3: 642 vertices, 1280 triangles)."""
    template_radius: float = 0.5
    """Radius of the template sphere in the object frame (objects have longest side 1)."""
    max_offset: float = 0.5
    """Bound of each per-vertex offset component."""
    lighting: str = "none"
    """Predicted light that shades the vertex colours: ``none``, ``sh`` (9 SH coefficients) or ``directional``."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    """Channels of the image encoder's stages (one pyramid level each)."""
    feature_dim: int = 256
    """Size of the encoder's global feature."""
    hidden_dim: int = 512
    """Width of the decoder layer shared by the offset and colour heads."""
    dropout: float = 0.0
    """Dropout probability on the global feature before the decoder (training only)."""
    target_views: int = 2
    """Views each prediction is rendered into and compared with: the input view plus ``target_views - 1``
    others of the same object drawn at random (DIB-R uses 2)."""
    silhouette: float = 1.0
    """Weight of the soft-silhouette IoU loss."""
    color: float = 1.0
    """Weight of the colour L1 loss (0 also leaves the colour head untrained)."""
    laplacian: float = 20.0
    """Weight of the uniform Laplacian regulariser."""
    flatten: float = 0.2
    """Weight of the flatten (dihedral angle) regulariser."""
    silhouette_delta: float = 0.0
    """Soft-silhouette falloff in ndc^2 (0: about half a pixel for the image size)."""
    silhouette_chamfer: float = 0.0
    """Weight of the 2D Chamfer between projected vertices and mask pixels, whose gradient reaches parts of the
    mask far from the mesh (:mod:`unrender.singleview.silhouette_chamfer`; 0: off, as in DIB-R)."""
    input_shift: int = 0
    """Training only: move each input image by up to this many pixels in x and y (targets and cameras stay), so
    that the encoder learns to ignore small framing changes (:func:`unrender.singleview.batches.jitter_input`)."""
    input_brightness: float = 0.0
    """Training only: scale the input object's colours by a factor drawn from ``[1 - b, 1 + b]``."""
    symmetry: str = "none"
    """Mirror plane the predicted shape is made symmetric about: ``x``, ``y`` or ``z`` (the plane ``axis = 0`` of the
    object frame), ``none``, or ``auto``: measured on the training split's ``pointcloud.npz`` when training
    starts (:func:`unrender.singleview.symmetry.detect_mirror_axis`) and written resolved to ``config.json``
    (a model built from an unresolved ``auto`` is not symmetrized). Off by default: on the 3 x 200 procedural
    collection (all symmetric about x = 0) ``auto`` gave CD-L1 0.0240 against 0.0226 without, in 30 minutes."""


@dataclass
class ImplicitConfig:
    """LIST-style implicit predictor (:class:`unrender.singleview.ImplicitPredictor`), its data and losses."""

    num_coarse_points: int = 512
    """Points of the predicted coarse cloud."""
    k_neighbours: int = 8
    """Coarse points per query for the local point feature."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    """Channels of the image encoder's stages."""
    feature_dim: int = 256
    """Size of the encoder's global feature."""
    hidden_dim: int = 256
    """Width of the SDF decoder."""
    frequencies: int = 4
    """Fourier frequencies of the query encoding."""
    pixel_channels: int = 0
    """Channels of a full-resolution local feature (a 3x3 convolution of the input image, sampled with the image
    itself at each query's image coordinates beside the encoder's pyramid, whose finest level is half the input
    size); 0: off."""
    pose_widths: tuple[int, ...] = ()
    """Stage widths of a separate image encoder for the spatial transformer (e.g. ``8,16,32,64,128``); empty: the
    transformer reads the shape encoder's global feature. Pair it with a higher ``transformer`` weight: with
    ``transformer=1`` it keeps the projection within ~1 pixel (airplanes, chairs) without taking shape features
    from the encoder, though the meshes came out level with the default (Chamfer-L1 0.0333 vs 0.0337, 15 minutes
    on 3 x 286 objects; another seed of the default gave 0.0560)."""
    sdf_samples: int = 100_000
    """SDF samples drawn once per object mesh (LIST's near-surface shells + uniform) and cached on disk."""
    sdf_cache: str = ""
    """Folder of the cached SDF samples: empty = ``RUN/sdf_cache``; ``data`` = ``DATA/sdf_cache`` (shared by
    every run on the collection); anything else is a folder path."""
    query_points: int = 2048
    """SDF samples per image and step, drawn at random from the object's cached samples."""
    query_mix: tuple[float, ...] = (0.3, 0.2, 0.3, 0.2)
    """Share of each step's queries drawn from each group of the cached samples (shells sigma 0.003, 0.01,
    0.07, then uniform); empty: uniformly over all samples, i.e. LIST's 45/44/10/1 %. More far-field queries
    than LIST's teach the inside/outside layout in the minutes a CPU run has."""
    surface_points: int = 1024
    """Surface points per image and step for the coarse cloud's Chamfer loss (from ``pointcloud.npz``)."""
    sdf: float = 1.0
    """Weight of the clamped SDF L1."""
    chamfer: float = 1.0
    """Weight of the coarse cloud's Chamfer loss (0 also leaves the coarse head untrained)."""
    transformer: float = 0.1
    """Weight of the spatial transformer's projection error against the true camera (0: camera-free). At 1 its
    error (~0.14 in image units) dwarfs the SDF term and the shared encoder serves the camera instead of the
    shape (Chamfer-L1 0.084 vs 0.069 at 0.1 in a 2-minute run on 3 x 12 objects; 0.0424 vs 0.0337 in 15 minutes on
    3 x 286). At 0.1 the local features are sampled a median 6-7 pixels (of 64) from the true projection, at 1
    about 1 (airplanes, chairs); see ``pose_widths``."""
    clamp: float = 0.1
    """SDF clamp ``delta`` of the L1 (DeepSDF)."""
    near_surface_weight: float = 4.0
    """Weight of samples within ``near_surface_band`` of the surface relative to the others (DISN: 4)."""
    near_surface_band: float = 0.02
    """See ``near_surface_weight``."""
    mesh_resolution: int = 64
    """Marching-cubes grid points per axis when ``predict`` extracts the surface."""
    mesh_coarse_resolution: int = 0
    """0: query the SDF at every grid point; ``R_0 > 0``: start from an ``R_0^3`` grid and refine near the surface
    only (``mesh_resolution - 1`` must be ``(R_0 - 1) 2^L``, e.g. 129 from 17): the same surface, far fewer
    queries (:func:`unrender.geometry.refined_grid.refined_sdf_grid`). The presets refine (fast 49 from 13,
    default 65 from 17, quality 129 from 17); the field defaults (64, 0) are those of runs made before."""
    mesh_bounds: float = 0.6
    """Half-size of the cube the surface is extracted in (objects have longest side 1)."""
    mesh_level: float = 0.0
    """Iso-value of the extracted surface (0 = the predicted zero level set; a small positive value keeps thin
    parts whose predicted SDF dips towards but not below 0, and grows the rest: pick it on validation meshes).
    With ``best_metric=chamfer`` and ``validation_levels``, ``best.pt`` holds the level validation chose."""
    validation_levels: tuple[float, ...] = ()
    """Iso-levels the ``chamfer`` validation extracts (:mod:`unrender.singleview.mesh_validation`); ``best.pt``
    keeps the one with the lowest Chamfer-L1 as ``mesh_level``. Empty: ``mesh_level`` only."""
    validation_resolution: int = 33
    """Grid points per axis of the ``chamfer`` validation's meshes (coarser than ``mesh_resolution``: it runs
    after every epoch)."""
    validation_coarse_resolution: int = 9
    """Coarse grid the validation meshes are refined from (0: dense); as ``mesh_coarse_resolution``."""


@dataclass
class SingleViewConfig:
    """Everything ``unrender train singleview`` needs besides the data and the output folder."""

    model: str = "dibr"
    """``dibr`` (template-mesh deformation, DIB-R) or ``implicit`` (SDF, LIST-style)."""
    preset: str = "default"
    """Name of the preset these values started from."""
    epochs: int = 50
    """Passes over the training split (``samples_per_object`` samples per object each)."""
    batch_size: int = 16
    """Images per optimiser step and process; under ``torchrun`` the global batch is ``batch_size * N``."""
    lr: float = 5e-4
    """Adam learning rate (the peak of the schedule)."""
    lr_schedule: str = "constant"
    """``constant`` or ``cosine``: ``lr * (f + (1 - f) (1 + cos(pi p)) / 2)`` with ``f = lr_final`` and ``p`` the
    share of the run done, the larger of steps / (``epochs`` x steps per epoch) and elapsed / ``max_minutes``,
    so that the rate reaches its floor whichever budget runs out first."""
    lr_final: float = 0.05
    """``cosine``: the last learning rate as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    grad_clip: float = 0.0
    """Clip the gradient's global norm to this value (0: no clipping)."""
    ema_decay: float = 0.0
    """Validate and keep ``best.pt`` from an exponential moving average of the weights with this decay per step
    (0: off; e.g. 0.999 averages about the last 1,000 steps). See :mod:`unrender.singleview.weight_average`."""
    samples_per_object: int = 4
    """Training samples per object and epoch, each from an input view drawn at random."""
    val_samples: int = 64
    """Validation samples (fixed views, at most this many) scored after every epoch."""
    best_metric: str = "auto"
    """Validation metric that picks ``best.pt``: ``auto`` (``iou`` for dibr, ``sdf_l1`` for implicit), ``loss``,
    ``iou``, ``chamfer`` (Chamfer-L1 against the val objects' ground truth, DIB-R's protocol: of the predicted
    mesh's 2,500 points for dibr; for implicit, of meshes extracted at ``implicit.validation_levels``,
    :mod:`unrender.singleview.mesh_validation`), ``sdf_l1`` or ``sign_accuracy``."""
    background: float = 1.0
    """Grey level of the training images' background (``unrender synth`` collections: white, 1); ``predict``
    composites RGBA inputs over it."""
    checkpoint_minutes: float = 5.0
    """Write ``checkpoint/last.pt`` at least this often (and at the end of every epoch)."""
    max_minutes: float = 0.0
    """Training time budget in minutes, summed over resumes (0: none); when it runs out, training validates,
    checkpoints and stops, keeping ``best.pt``."""
    max_steps: int = 0
    """Stop after this many optimiser steps in total (0: no limit)."""
    seed: int = 0
    """Seed of the initial weights and of every random draw of the data (views, SDF queries)."""
    deterministic: bool = True
    """Use PyTorch's deterministic kernels (:func:`unrender.run_state.deterministic_kernels`): the same seed gives
    the same weights, and a resumed run ends where an uninterrupted one would."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; under ``torchrun`` each process takes
    ``cuda:LOCAL_RANK``."""
    num_workers: int = 0
    """DataLoader worker processes per training process (0: load in the training process)."""
    threads: int = 0
    """Torch CPU threads per process (0: leave torch's default, one per core). On a machine shared with other
    busy processes use 1: two threads on two oversubscribed cores made a DIB-R step 45x slower (they wait for
    each other at every op)."""
    preload: bool = True
    """Keep every object's images in memory (about ``views * H * W * 16`` bytes per object); ``false`` reads
    the needed views from disk for every sample."""
    dibr: DIBRConfig = field(default_factory=DIBRConfig)
    """Model and loss settings used when ``model = dibr``."""
    implicit: ImplicitConfig = field(default_factory=ImplicitConfig)
    """Model, data and loss settings used when ``model = implicit``."""

    def resolved_best_metric(self) -> str:
        """``best_metric`` with ``auto`` replaced by the model's natural metric."""
        if self.best_metric != "auto":
            return self.best_metric
        return "iou" if self.model == "dibr" else "sdf_l1"


#: Validation metrics and whether larger is better.
METRIC_HIGHER_IS_BETTER = {"loss": False, "iou": True, "chamfer": False, "sdf_l1": False, "sign_accuracy": True}


def preset(name: str, model: str = "dibr") -> SingleViewConfig:
    """The named preset for ``model``: ``fast`` (small networks, minutes on a CPU), ``default``, ``quality``.

    Example:
        >>> preset("fast", "implicit").implicit.sdf_samples
        20000
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose fast, default or quality.")
    cfg = SingleViewConfig(model=model, preset=name)
    if name == "fast":
        small = (8, 16, 32, 64, 128)
        cfg.epochs, cfg.batch_size, cfg.lr, cfg.samples_per_object, cfg.val_samples = 20, 8, 1e-3, 2, 16
        cfg.dibr = DIBRConfig(widths=small, feature_dim=128, hidden_dim=256)
        cfg.implicit = ImplicitConfig(widths=small, feature_dim=128, hidden_dim=128, num_coarse_points=256,
                                      sdf_samples=20_000, query_points=1024, surface_points=512, mesh_resolution=49,
                                      mesh_coarse_resolution=13)
    elif name == "quality":
        cfg.epochs, cfg.batch_size, cfg.lr, cfg.samples_per_object = 200, 32, 2e-4, 8
        cfg.dibr = DIBRConfig(subdivisions=4, hidden_dim=1024)
        cfg.implicit = ImplicitConfig(num_coarse_points=1024, query_points=4096, sdf_samples=200_000,
                                      mesh_resolution=129, mesh_coarse_resolution=17)
    elif model == "implicit":
        # A separate pose encoder under a 10x camera loss: over two seeds (15 min, 3 x 286 objects) Chamfer-L1
        # 0.0333 / 0.0318 against 0.0337 / 0.0560 with the transformer reading the shape encoder at weight 0.1.
        cfg.implicit = ImplicitConfig(mesh_resolution=65, mesh_coarse_resolution=17, transformer=1.0,
                                      pose_widths=(8, 16, 32, 64, 128))
    elif model == "dibr":
        # 150 epochs of 3 x 200 objects: 19 min on 2 cores at batch 32 (CD-L1 0.0229), 30 min at batch 16 and
        # lr 5e-4 (0.0229 in 141 epochs; 50 epochs: 0.0237). Batch 32 costs ~12% less per image.
        cfg.epochs, cfg.batch_size, cfg.lr = 150, 32, 1e-3
    return validate_config(cfg)


def validate_config(cfg: SingleViewConfig) -> SingleViewConfig:
    """Check the values that would otherwise fail deep inside training; returns ``cfg``.

    Example:
        >>> validate_config(SingleViewConfig(model="nerf"))
        Traceback (most recent call last):
        ...
        unrender.errors.InputError: model must be dibr or implicit; got 'nerf'.
    """
    if cfg.model not in MODELS:
        raise InputError(f"model must be dibr or implicit; got {cfg.model!r}.")
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "samples_per_object": cfg.samples_per_object,
                "val_samples": cfg.val_samples, "dibr.target_views": cfg.dibr.target_views,
                "implicit.query_points": cfg.implicit.query_points,
                "implicit.surface_points": cfg.implicit.surface_points,
                "implicit.sdf_samples": cfg.implicit.sdf_samples}
    for key, value in positive.items():
        if value < 1:
            raise InputError(f"{key} must be >= 1; got {value}.")
    if not cfg.lr > 0:
        raise InputError(f"lr must be positive; got {cfg.lr}.")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"lr_schedule must be {' or '.join(LR_SCHEDULES)}; got {cfg.lr_schedule!r}.")
    if not 0.0 <= cfg.lr_final <= 1.0:
        raise InputError(f"lr_final must be in [0, 1]; got {cfg.lr_final}.")
    for key in ("max_minutes", "max_steps", "checkpoint_minutes", "num_workers", "threads", "grad_clip"):
        if getattr(cfg, key) < 0:
            raise InputError(f"{key} must be >= 0; got {getattr(cfg, key)}.")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise InputError(f"ema_decay must be in [0, 1) (0: off); got {cfg.ema_decay}.")
    metric = cfg.resolved_best_metric()
    allowed = ("loss", "iou", "chamfer") if cfg.model == "dibr" else ("loss", "sdf_l1", "sign_accuracy", "chamfer")
    if metric not in allowed:
        raise InputError(f"best_metric {metric!r} is not computed for model {cfg.model}; use auto or one of "
                         f"{', '.join(allowed)}.")
    if cfg.implicit.pixel_channels < 0:
        raise InputError(f"implicit.pixel_channels must be >= 0 (0: off); got {cfg.implicit.pixel_channels}.")
    if cfg.dibr.input_shift < 0 or not 0.0 <= cfg.dibr.input_brightness < 1.0:
        raise InputError(f"dibr.input_shift must be >= 0 and dibr.input_brightness in [0, 1); got "
                         f"{cfg.dibr.input_shift}, {cfg.dibr.input_brightness}.")
    from ..geometry.refined_grid import refinement_levels

    for fine, coarse in (("mesh_resolution", "mesh_coarse_resolution"),
                         ("validation_resolution", "validation_coarse_resolution")):
        if not getattr(cfg.implicit, coarse):
            continue
        try:
            refinement_levels(getattr(cfg.implicit, fine), getattr(cfg.implicit, coarse))
        except InputError as exc:
            raise InputError(f"implicit.{coarse}: {exc} Or set implicit.{coarse}=0 to query every grid "
                             f"point.") from None
    if not 0.0 <= cfg.dibr.dropout < 1.0:
        raise InputError(f"dibr.dropout must be in [0, 1); got {cfg.dibr.dropout}.")
    if cfg.dibr.symmetry not in SYMMETRY_CHOICES:
        raise InputError(f"dibr.symmetry must be one of {', '.join(SYMMETRY_CHOICES)}; got {cfg.dibr.symmetry!r}.")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda; got {cfg.device!r}.")
    return cfg


def lr_factor(cfg: SingleViewConfig, step: int, total_steps: int, elapsed: float) -> float:
    """Multiplier of ``cfg.lr`` after ``step`` of ``total_steps`` optimiser steps and ``elapsed`` seconds.

    ``cosine``: ``f + (1 - f) (1 + cos(pi p)) / 2`` with ``f = cfg.lr_final`` and
    ``p = min(1, max(step / total_steps, elapsed / (60 max_minutes)))``; ``constant``: 1.

    Example:
        >>> cfg = SingleViewConfig(lr_schedule="cosine", lr_final=0.1, max_minutes=10.0)
        >>> lr_factor(cfg, 0, 100, 0.0), lr_factor(cfg, 50, 100, 0.0), round(lr_factor(cfg, 10, 100, 600.0), 6)
        (1.0, 0.55, 0.1)
    """
    if cfg.lr_schedule == "constant":
        return 1.0
    p = step / max(total_steps, 1)
    if cfg.max_minutes > 0:
        p = max(p, elapsed / (60.0 * cfg.max_minutes))
    return cosine_decay(p, cfg.lr_final)


def apply_overrides(cfg: SingleViewConfig, items) -> SingleViewConfig:
    """Apply ``["key=value", "section.key=value", ...]`` to a copy of ``cfg``; unknown keys or bad values raise
    (:func:`unrender.config_overrides.apply_overrides`), then :func:`validate_config`.

    Tuples (``dibr.widths``) are written ``8,16,32`` or ``[8,16,32]``.

    Example:
        >>> apply_overrides(preset("fast"), ["implicit.widths=8,16,32"]).implicit.widths
        (8, 16, 32)
    """
    return validate_config(override_fields(cfg, items))


def config_to_dict(cfg: SingleViewConfig) -> dict:
    """Plain-JSON form of ``cfg`` (tuples become lists), as written to ``RUN/config.json``."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(d: dict, source: str = "the config") -> SingleViewConfig:
    """Inverse of :func:`config_to_dict` (``--resume`` and ``predict``); ``source`` names the file in errors.

    Example:
        >>> config_from_dict(config_to_dict(preset("fast"))) == preset("fast")
        True
    """
    return validate_config(dataclass_from_dict(SingleViewConfig, d, source))
