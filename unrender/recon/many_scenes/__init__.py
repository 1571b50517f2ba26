"""Many scenes at once (Scaled Inverse Graphics / Fused-Planes): tri-plane scenes that share a basis.

``fit_scenes`` learns the shared parts with the first scenes, ``add_scenes`` learns new scenes cheaply with
them frozen; see :mod:`.training` for the losses and the multi-process sharding, :mod:`.model` for the
representation and :mod:`.store` for the run folder.
"""

from .config import ManyScenesConfig, apply_overrides, preset
from .model import SceneParams, SharedParts, render_rays, scene_planes
from .scenes import find_scenes, read_scene, scene_box, train_rays
from .store import RunStore
from .training import add_scenes, fit_scenes

__all__ = ["ManyScenesConfig", "RunStore", "SceneParams", "SharedParts", "add_scenes", "apply_overrides",
           "find_scenes", "fit_scenes", "preset", "read_scene", "render_rays", "scene_box", "scene_planes",
           "train_rays"]
