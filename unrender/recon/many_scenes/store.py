"""A run's files: shared parts in one checkpoint, every scene in its own folder.

    RUN/config.json                      the full config (written by ``fit``, read by ``add``)
    RUN/shared.pt                        shared parts (decoder, bases), the new-scene prior, stage-1 state
    RUN/scenes/<name>/scene.pt           the scene's own parameters (+ optimizer state while in stage 1)
    RUN/scenes/<name>/metrics.json       test PSNR / SSIM, parameter bytes, training time
    RUN/scenes/<name>/test/<frame>.png   renders of the scene's test frames (RGBA, input size)
    RUN/summary.json                     every scene's metrics and their means

Because each scene is separate, adding scenes never touches the others and dropping one is deleting its
folder. All checkpoints load with ``torch.load(..., weights_only=True)`` and are written atomically.

Example:
    >>> store = RunStore("run")                       # doctest: +SKIP
    >>> store.scene_done("chair_0001")                 # doctest: +SKIP
    False
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import DataError
from ...run_state import atomic_torch_save, atomic_write_text
from .config import ManyScenesConfig, config_from_dict, config_to_dict


class RunStore:
    """Paths and (de)serialisation of one many-scene run folder (module docstring)."""

    def __init__(self, root):
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def shared_path(self) -> Path:
        return self.root / "shared.pt"

    def scene_dir(self, name: str) -> Path:
        return self.root / "scenes" / name

    def scene_path(self, name: str) -> Path:
        return self.scene_dir(name) / "scene.pt"

    # ----------------------------------------------------------------------------------------- config
    def write_config(self, cfg: ManyScenesConfig) -> None:
        atomic_write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n", self.config_path)

    def read_config(self) -> ManyScenesConfig:
        if not self.config_path.is_file():
            raise DataError(f"{self.config_path} is missing: {self.root} is not a many-scene run; create one with "
                            f"`unrender many fit DATA --out {self.root}`.")
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{self.config_path} is not readable JSON ({exc}); restore it or start a new run.") from None
        return config_from_dict(data, str(self.config_path))

    # ------------------------------------------------------------------------------------- checkpoints
    def save_shared(self, payload: dict) -> None:
        atomic_torch_save(payload, self.shared_path)

    def load_shared(self) -> dict:
        return self._load(self.shared_path, "the shared parts")

    def save_scene(self, name: str, payload: dict) -> None:
        atomic_torch_save(payload, self.scene_path(name))

    def load_scene(self, name: str) -> dict:
        return self._load(self.scene_path(name), f"scene {name}")

    def scene_done(self, name: str) -> bool:
        """Whether scene ``name`` finished training (its checkpoint says so)."""
        path = self.scene_path(name)
        return path.is_file() and bool(self.load_scene(name).get("done", False))

    def scene_names(self) -> list[str]:
        """Names of the scenes that have a checkpoint, sorted."""
        folder = self.root / "scenes"
        return sorted(p.parent.name for p in folder.glob("*/scene.pt")) if folder.is_dir() else []

    def _load(self, path: Path, what: str) -> dict:
        if not path.is_file():
            raise DataError(f"{path} is missing ({what}); run `unrender many fit` first or restore the file.")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 -- any unpickling failure means the same thing to the user
            raise DataError(f"{path} ({what}) cannot be read ({exc}); delete it to retrain that part.") from None

    # ------------------------------------------------------------------------------------------ metrics
    def write_scene_metrics(self, name: str, metrics: dict) -> None:
        atomic_write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", self.scene_dir(name) / "metrics.json")

    def write_summary(self) -> dict:
        """Collect every scene's ``metrics.json`` into ``RUN/summary.json`` (with means) and return it."""
        scenes = {}
        for name in self.scene_names():
            path = self.scene_dir(name) / "metrics.json"
            if path.is_file():
                scenes[name] = json.loads(path.read_text())
        keys = ("psnr", "ssim", "train_seconds", "parameter_bytes")
        means = {k: sum(m[k] for m in scenes.values()) / len(scenes) for k in keys
                 if scenes and all(k in m for m in scenes.values())}
        summary = {"scenes": len(scenes), "mean": means, "per_scene": scenes}
        atomic_write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", self.root / "summary.json")
        return summary
