"""Configuration of multi-view reconstruction: one typed dataclass, named presets, ``key=value`` overrides.

    cfg = preset("fast")                       # or "default", "quality"
    cfg = apply_overrides(cfg, ["pass1.iterations=300", "triangles=20000"])

Every field has a docstring; ``unrender reconstruct --set KEY=VALUE`` reaches any of them (nested
sections with a dot). The full config used is written to ``OUT/config.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...config_overrides import apply_overrides as override_fields
from ...errors import InputError
from ..stereo_carving import StereoCarveConfig


@dataclass
class Pass1Config:
    """Pass 1: topology (DMTet), a neural material field and the light, from scratch."""

    iterations: int = 500
    """Optimisation steps."""
    topology: str = "dmtet"
    """Surface representation: ``dmtet`` (deformable tetrahedral grid) or ``flexicubes`` (Shen et al. 2023)."""
    tet_resolution: int = 48
    """Cells per axis of the tetrahedral grid (or of the FlexiCubes cube grid) over the object's bounding box."""
    lr_weights: float = 0.005
    """Adam learning rate of the FlexiCubes interpolation weights (unused with ``dmtet``)."""
    batch_size: int = 2
    """Views per step."""
    lr_sdf: float = 0.05
    """Adam learning rate of the SDF values, in grid cells per step (scaled by the cell size)."""
    lr_deform: float = 0.01
    """Adam learning rate of the vertex deformations (tanh-bounded to a quarter cell)."""
    laplacian: float = 200.0
    """Weight of the uniform Laplacian of the extracted surface (in units of the box size). Marching tets
    leaves a rippled surface; this term alone raised normal consistency from 0.83 to 0.935 on a vase."""
    taubin_iterations: int = 10
    """Taubin smoothing steps applied to the pass-1 mesh before unwrapping (removes marching-tets ripples;
    raised normal consistency from 0.958 to 0.971 on spot, F-score unchanged)."""
    sdf_init_truncation: float = 0.0
    """Clamp the initial (visual-hull) SDF to +-this many grid cells (0 = exact distances). Deep vertices then
    need fewer steps to change sign, so concavities the hull closed can be carved sooner."""
    lr_material: float = 0.01
    """Adam learning rate of the material field."""
    lr_light: float = 0.01
    """Adam learning rate of the environment map."""
    sdf_reg_start: float = 0.2
    """Weight of the SDF sign regulariser at the first step (decays linearly) ..."""
    sdf_reg_end: float = 0.01
    """... to this weight at the last step."""
    material_smooth: float = 0.02
    """Weight of the material smoothness term |m(x) - m(x + N(0, 0.01 * box))| (all outputs, the normal
    perturbation included)."""
    normal_offset: float = 0.0
    """Bound of the material field's normal perturbation (world-space offset added to the geometric normal
    before normalising, nvdiffrec's learned normal in pass 1); baked into the normal map. 0 = geometric normals."""
    field_levels: int = 6
    """Levels of the multiresolution grid encoding."""
    field_max_res: int = 128
    """Resolution of the finest level."""
    field_hidden: int = 32
    """Width of the MLP's hidden layers."""


@dataclass
class Pass2Config:
    """Pass 2: fixed topology; UV textures, vertex positions and light fine-tuned."""

    iterations: int = 300
    """Optimisation steps."""
    batch_size: int = 2
    """Views per step."""
    texture_resolution: int = 1024
    """Side of the baked base-colour, ORM and normal textures."""
    lr_positions: float = 0.002
    """Adam learning rate of vertex offsets (world units; scaled by the box size). Raised from 0.0005: dents the
    hull filled on a path-traced blob then close within 300 steps (F@0.01 0.962 -> 0.978; spot and a chair
    unchanged within 0.002)."""
    lr_textures: float = 0.01
    """Adam learning rate of the textures."""
    lr_light: float = 0.01
    """Adam learning rate of the environment map."""
    laplacian: float = 2000.0
    """Weight of the uniform Laplacian of the vertex offsets (in units of the box size); keeps pass 2 from
    folding the surface (nvdiffrec uses a similar scale)."""
    learn_normal_map: bool = True
    """Fine-tune a tangent-space normal map (else it stays flat)."""


@dataclass
class MultiViewConfig:
    """Everything ``unrender reconstruct`` needs besides the data and the output folder."""

    preset: str = "default"
    """Name of the preset these values started from."""
    pass1: Pass1Config = field(default_factory=Pass1Config)
    """Topology + material field + light."""
    pass2: Pass2Config = field(default_factory=Pass2Config)
    """Textures + vertex refinement + light."""
    train_resolution: int = 0
    """Longest image side used for training (0 = the dataset's own size); test renders use full size."""
    mask_weight: float = 1.0
    """Weight of the mask (alpha) MSE loss."""
    light_resolution: int = 64
    """Face resolution of the learned environment cube map."""
    light_white_balance: float = 0.005
    """Weight of the light prior pulling each texel towards its grey value (nvdiffrec's light regulariser)."""
    triangles: int = 0
    """Triangle budget of the final mesh (0 = no simplification)."""
    hull_resolution: int = 96
    """Voxels per axis of the visual hull that gives the bounding box and the initial shape."""
    carving: str = "stereo"
    """How the visual hull is opened where the silhouettes closed it (a bowl, a mug's inside) before pass 1:
    ``stereo`` (depths matched between views, :mod:`unrender.recon.stereo_carving`), ``photo`` (per-voxel colour
    agreement, :mod:`unrender.recon.photo_carving`; less robust) or ``none``."""
    stereo: StereoCarveConfig = field(default_factory=StereoCarveConfig)
    """Settings of the stereo carving (``--set stereo.min_votes=3``)."""
    checkpoint_minutes: float = 3.0
    """Write a checkpoint at least this often (and at the end of each pass)."""
    max_minutes: float = 9.0
    """Time budget for training in minutes, carving included (0 = none): pass 1 may use 60% of it; training stops
    early, the schedules finish within the budget, and every output is still written. ``default`` (9) keeps a run
    within 10 minutes on 2 CPU cores; ``fast`` has 2.5, ``quality`` none. ``metrics.json`` records the steps done."""
    seed: int = 0
    """Seed of view sampling, backgrounds and initial values."""
    deterministic: bool = True
    """Use PyTorch's deterministic kernels (:func:`unrender.run_state.deterministic_kernels`): the same seed gives
    the same mesh, and a resumed run ends where an uninterrupted one would."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""


def preset(name: str) -> MultiViewConfig:
    """The named preset: ``fast`` (a few minutes on 2 CPU cores), ``default``, ``quality``.

    Example:
        >>> preset("fast").pass1.tet_resolution
        32
    """
    cfg = MultiViewConfig(preset=name)
    if name == "fast":
        cfg.train_resolution = 128
        cfg.hull_resolution = 64
        cfg.pass1 = Pass1Config(iterations=200, tet_resolution=32, field_levels=4, field_max_res=64)
        cfg.pass2 = Pass2Config(iterations=100, texture_resolution=512)
        cfg.max_minutes = 2.5
    elif name == "default":
        pass
    elif name == "quality":
        cfg.pass1 = Pass1Config(iterations=1500, tet_resolution=80, batch_size=4, field_levels=8, field_max_res=256)
        cfg.pass2 = Pass2Config(iterations=1000, batch_size=4, texture_resolution=2048)
        cfg.hull_resolution = 128
        cfg.light_resolution = 128
        cfg.max_minutes = 0.0
    else:
        raise InputError(f"unknown preset {name!r}; choose fast, default or quality.")
    return cfg


def apply_overrides(cfg: MultiViewConfig, items) -> MultiViewConfig:
    """Apply ``["section.key=value", ...]`` to a copy of ``cfg``; unknown keys and bad values raise
    (:func:`unrender.config_overrides.apply_overrides`).

    Example:
        >>> apply_overrides(preset("fast"), ["pass1.iterations=7"]).pass1.iterations
        7
    """
    return override_fields(cfg, items)


def config_to_dict(cfg: MultiViewConfig) -> dict:
    """Plain-JSON form of ``cfg`` (written to ``OUT/config.json``)."""
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict) -> MultiViewConfig:
    """Inverse of :func:`config_to_dict` (used by ``--resume``)."""
    d = dict(d)
    p1, p2 = Pass1Config(**d.pop("pass1")), Pass2Config(**d.pop("pass2"))
    if "photo_carving" in d:  # configs written before ``carving`` replaced it
        d["carving"] = "photo" if d.pop("photo_carving") else "none"
    stereo = StereoCarveConfig(**d.pop("stereo", {}))
    return MultiViewConfig(pass1=p1, pass2=p2, stereo=stereo, **d)
