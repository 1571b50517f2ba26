"""Configuration of many-scene learning (``unrender many fit|add``): typed dataclasses, presets, overrides.

    cfg = preset("default", representation="shared")      # or "fast"; representation shared|latent|independent
    cfg = apply_overrides(cfg, ["add.iterations=300", "triplane.bases=32"])

The full config is written to ``RUN/config.json`` by ``fit`` and read back by ``add`` and ``--resume``, so
that every scene of a run uses the same shared parts.

Example:
    >>> cfg = apply_overrides(preset("fast"), ["triplane.bases=8"])
    >>> cfg.triplane.bases, cfg.representation
    (8, 'shared')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...config_overrides import apply_overrides as override_fields
from ...config_overrides import dataclass_from_dict
from ...errors import InputError

REPRESENTATIONS = ("shared", "independent", "latent")
PRESETS = ("fast", "default")


@dataclass
class TriPlaneConfig:
    """Tri-plane sizes and the shared decoder (:mod:`unrender.recon.many_scenes.model`)."""

    resolution: int = 64
    """Texels per side of every plane (micro, macro and independent planes alike)."""
    micro_channels: int = 10
    """``shared``: channels of each scene's own (micro) planes. Fewer save bytes but cost quality: on 24^2
    scenes 8 of 16 channels matched an independent tri-plane after 300 stage-2 steps, 4 of 16 lagged 1.8 dB."""
    macro_channels: int = 22
    """``shared``: channels of the K shared base planes; a scene's macro planes are a weighted sum of them.
    ``independent`` scenes own ``micro_channels + macro_channels`` channels, so both decode the same width."""
    bases: int = 16
    """``shared``: number K of shared base tri-planes."""
    hidden: int = 64
    """Width of the two hidden layers of the shared decoder (features -> density, colour)."""


@dataclass
class RenderConfig:
    """Rays and samples (volume rendering in :mod:`unrender.render.volume`)."""

    samples: int = 48
    """Stratified samples per ray inside the scene box (jittered while training)."""
    rays: int = 1024
    """Rays per scene and step."""
    foreground_fraction: float = 0.5
    """Share of each step's rays drawn from pixels inside the mask (the rest from the whole image)."""
    box_scale: float = 1.0
    """Half-size of the scene box as a multiple of ``camera distance x tan(fov / 2)`` around the point the
    cameras look at (:func:`unrender.recon.many_scenes.scenes.scene_box`)."""
    chunk: int = 8192
    """Rays per chunk when rendering whole test images."""


@dataclass
class FitConfig:
    """Stage 1 (``many fit``): shared parts learned jointly with the first scenes."""

    steps_per_scene: int = 1500
    """Optimisation steps each scene takes part in; total steps = this x scenes / ``scenes_per_step``."""
    scenes_per_step: int = 4
    """Scenes rendered in every step (per process)."""
    lr_planes: float = 0.02
    """Adam learning rate of scene planes (micro or independent) and of the shared bases."""
    lr_weights: float = 0.01
    """Adam learning rate of each scene's basis weights."""
    lr_decoder: float = 0.005
    """Adam learning rate of the shared decoder."""


@dataclass
class AddConfig:
    """Stage 2 (``many add``): new scenes learned with everything shared frozen."""

    iterations: int = 200
    """Optimisation steps per new scene."""
    lr_planes: float = 0.1
    """Adam learning rate of the scene's planes (micro or independent). Higher than stage 1's: a new scene
    starts from the mean scene and has few steps to move away from it (0.1 beat 0.02 and 0.05 for both
    representations on 32^2 scenes, by 1-3 dB after 150 steps)."""
    lr_weights: float = 0.05
    """Adam learning rate of the scene's basis weights."""


@dataclass
class LatentConfig:
    """``latent`` representation (:mod:`unrender.recon.many_scenes.latent`): shared bases rendered in the latent
    space of an autoencoder trained on the collection (IG-AE's idea)."""

    factor: int = 2
    """Latent images are ``1/factor`` of the image size (a power of two dividing it). On 32^2 scenes the
    autoencoder reached 27 dB at 2 and 22 dB at 4 (1000 steps): the latent space bounds the quality."""
    channels: int = 4
    """Channels of the latent images."""
    width: int = 32
    """Convolution width of the autoencoder."""
    autoencoder_steps: int = 1000
    """Steps of stage 1's autoencoder training (before the scenes)."""
    autoencoder_lr: float = 0.002
    """Adam learning rate of the autoencoder."""
    autoencoder_batch: int = 16
    """Images per autoencoder step."""
    views_per_step: int = 2
    """Whole latent views rendered per scene and step (``views x (H/f) x (W/f)`` rays)."""
    latent_weight: float = 1.0
    """Weight of the latent loss ``|z_render - E(I)|^2`` beside the RGB loss through the decoder."""
    joint_lr: float = 0.0
    """Adam learning rate of the autoencoder while stage 1 fits the scenes (0: frozen after its pretraining).
    Above 0 it keeps learning with the scenes, IG-AE's 3D-consistency training: the encoder is pulled towards
    latents a tri-plane can render (``|z_render - E(I)|^2``) while ``|D(E(I)) - I|^2`` keeps it an autoencoder.
    On 64^2 scenes (factor 2, 12 channels, one view per step, 2000 autoencoder steps, 8 stage-1 scenes x 300
    steps) the image-only autoencoder reached 32.4 dB, yet new scenes reached only 22.95 dB after 400 stage-2
    steps (its latents disagree between views); ``joint_lr=1e-3`` gave 24.79 dB, independent tri-planes 27.44;
    with 900 stage-1 steps per scene 26.31 against 27.59."""


@dataclass
class ManyScenesConfig:
    """Everything ``unrender many`` needs; one docstring per field."""

    representation: str = "shared"
    """``shared`` (micro planes + weighted sum of shared bases, Fused-Planes), ``latent`` (the same, rendered
    in an autoencoder's latent space) or ``independent`` (each scene owns a full tri-plane; the baseline)."""
    preset: str = "default"
    """Name of the preset the config started from (informational)."""
    triplane: TriPlaneConfig = field(default_factory=TriPlaneConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    add: AddConfig = field(default_factory=AddConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    tv_weight: float = 1e-3
    """Weight of the total-variation regulariser on every trained plane."""
    opacity_weight: float = 0.1
    """Weight of the mask loss ``mean((opacity - alpha)^2)``."""
    test_views: int = 0
    """Test frames rendered and scored per scene (0: all of the test split)."""
    seed: int = 0
    """Seed of initialisation and ray sampling."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    threads: int = 0
    """Torch CPU threads per process (0: PyTorch's default; torchrun runs set 1 unless given)."""
    checkpoint_minutes: float = 2.0
    """Minutes between stage-1 checkpoints (stage 2 saves every scene when it is done)."""
    mesh_resolution: int = 0
    """Grid size of the marching-cubes mesh written as ``RUN/scenes/<name>/mesh.ply`` (0: no mesh)."""
    mesh_level: float = 10.0
    """Density (per world unit of length) whose level set is the exported mesh."""


def preset(name: str = "default", representation: str = "shared") -> ManyScenesConfig:
    """The named preset: ``fast`` (tests, seconds per scene) or ``default`` (the benchmark's settings).

    Example:
        >>> preset("fast").add.iterations
        60
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose {' or '.join(PRESETS)}.")
    cfg = ManyScenesConfig(representation=representation, preset=name)
    if name == "fast":
        cfg.triplane = TriPlaneConfig(resolution=32, micro_channels=4, macro_channels=12, bases=8, hidden=32)
        cfg.render = RenderConfig(samples=32, rays=512)
        cfg.fit.steps_per_scene = 300
        cfg.add.iterations = 60
    return validate_config(cfg)


def validate_config(cfg: ManyScenesConfig) -> ManyScenesConfig:
    """Check the values that would otherwise fail deep inside training; returns ``cfg``.

    Example:
        >>> validate_config(ManyScenesConfig(representation="voxels"))
        Traceback (most recent call last):
        ...
        unrender.errors.InputError: representation must be shared, independent, latent; got 'voxels'.
    """
    if cfg.representation not in REPRESENTATIONS:
        raise InputError(f"representation must be {', '.join(REPRESENTATIONS)}; got {cfg.representation!r}.")
    positive = {"triplane.resolution": cfg.triplane.resolution, "triplane.micro_channels": cfg.triplane.micro_channels,
                "triplane.macro_channels": cfg.triplane.macro_channels, "triplane.bases": cfg.triplane.bases,
                "triplane.hidden": cfg.triplane.hidden, "render.samples": cfg.render.samples,
                "render.rays": cfg.render.rays, "render.chunk": cfg.render.chunk,
                "fit.steps_per_scene": cfg.fit.steps_per_scene, "fit.scenes_per_step": cfg.fit.scenes_per_step,
                "add.iterations": cfg.add.iterations, "latent.factor": cfg.latent.factor,
                "latent.channels": cfg.latent.channels, "latent.width": cfg.latent.width,
                "latent.views_per_step": cfg.latent.views_per_step, "latent.autoencoder_batch":
                cfg.latent.autoencoder_batch}
    for key, value in positive.items():
        if value < 1:
            raise InputError(f"{key} must be >= 1; got {value}.")
    if not 0.0 <= cfg.render.foreground_fraction <= 1.0:
        raise InputError(f"render.foreground_fraction must be in [0, 1]; got {cfg.render.foreground_fraction}.")
    if cfg.latent.joint_lr < 0:
        raise InputError(f"latent.joint_lr must be >= 0; got {cfg.latent.joint_lr}.")
    for key in ("tv_weight", "opacity_weight", "test_views", "threads", "checkpoint_minutes", "mesh_resolution"):
        if getattr(cfg, key) < 0:
            raise InputError(f"{key} must be >= 0; got {getattr(cfg, key)}.")
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda; got {cfg.device!r}.")
    return cfg


def apply_overrides(cfg: ManyScenesConfig, items) -> ManyScenesConfig:
    """Apply ``["key=value", "section.key=value", ...]`` to a copy of ``cfg``, then :func:`validate_config`."""
    return validate_config(override_fields(cfg, items))


def config_to_dict(cfg: ManyScenesConfig) -> dict:
    """Plain-JSON form of ``cfg``, as written to ``RUN/config.json``."""
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict, source: str = "the config") -> ManyScenesConfig:
    """Inverse of :func:`config_to_dict`; ``source`` names the file in errors.

    Example:
        >>> config_from_dict(config_to_dict(preset("fast"))) == preset("fast")
        True
    """
    return validate_config(dataclass_from_dict(ManyScenesConfig, d, source))
