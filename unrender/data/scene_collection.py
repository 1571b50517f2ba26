"""Many procedural scenes for many-scene learning (``unrender synth OUT --kind scenes --scenes N``).

Scene ``i`` is one procedural textured object (family ``FAMILIES[(seed + i) % len(FAMILIES)]``, shape and
textures from the seed ``seed * 100_000 + i``) under one studio environment shared by the whole collection
(a product catalogue's setting), rendered into its own NeRF-synthetic folder::

    OUT/scene_<seed>_0000/transforms_{train,test}.json, train/r_<k>.png, test/r_<k>.png   (RGBA, sRGB)
    OUT/scene_<seed>_0000/gt/                                                       (mesh, probe, scene.json)
    OUT/collection.json                                                             (what was made)

Same seed, same bytes.

Example:
    >>> synthesize_scenes("/tmp/scenes", scenes=2, views=4, test_views=2, resolution=32, force=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .procedural_env import random_environment
from .procedural_textures import random_pbr_material
from .synth import prepare_output, write_dataset

#: Texture size of the scenes' materials (scenes are rendered small; larger textures only cost time).
TEXTURE_RESOLUTION = 128


def synthesize_scenes(out, scenes: int = 10, views: int = 50, test_views: int = 10, resolution: int = 64,
                      seed: int = 0, force: bool = False) -> Path:
    """Write ``scenes`` procedural scenes (module docstring).

    Args:
        out: output folder; must be empty or absent unless ``force``.
        scenes: number of scenes.
        views: training views per scene.
        test_views: test views per scene.
        resolution: square image size in pixels.
        seed: everything follows from it.
    Returns:
        the output folder.
    """
    from ..geometry.procedural_objects import FAMILIES, procedural_object

    for key, value in {"scenes": scenes, "views": views, "test_views": test_views, "resolution": resolution}.items():
        if value < 1:
            raise InputError(f"{key} must be at least 1; got {value}.")
    out = prepare_output(Path(out), force)
    env = random_environment(seed)
    names = []
    for i in range(scenes):
        family = FAMILIES[(seed + i) % len(FAMILIES)]
        object_seed = seed * 100_000 + i
        mesh = procedural_object(family, object_seed)
        mesh.material = random_pbr_material(object_seed, resolution=TEXTURE_RESOLUTION)
        name = f"scene_{seed}_{i:04d}"
        folder = out / name
        folder.mkdir()
        write_dataset(folder, mesh, env, views, resolution, object_seed, extra={"family": family},
                      splits={"train": views, "test": test_views})
        names.append(name)
    meta = {"scenes": names, "views": views, "test_views": test_views, "resolution": resolution, "seed": seed}
    (out / "collection.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
