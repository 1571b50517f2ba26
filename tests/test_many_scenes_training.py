"""`unrender many fit|add` end to end on tiny procedural scenes: outputs, the frozen shared parts of stage 2,
exact resume after a kill, 2-process sharding with gloo, and the errors a user can fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unrender.cli import app
from unrender.data.scene_collection import synthesize_scenes
from unrender.errors import DataError
from unrender.recon.many_scenes import RunStore, SharedParts, add_scenes, apply_overrides, fit_scenes, preset
from unrender.recon.many_scenes import training
from unrender.recon.many_scenes.training import shared_digest

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
TINY = ["fit.steps_per_scene=150", "fit.scenes_per_step=2", "add.iterations=100", "render.rays=256",
        "render.samples=16", "triplane.resolution=16"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    fit = synthesize_scenes(root / "fit", scenes=4, views=16, test_views=2, resolution=24, seed=0)
    # seed 7's first scene is a vase (seed 5's, a thin knot, is beyond 16 views of 24^2 pixels for either kind)
    new = synthesize_scenes(root / "new", scenes=1, views=16, test_views=2, resolution=24, seed=7)
    return fit, new


def tiny(representation="shared", *extra):
    return apply_overrides(preset("fast", representation), TINY + ["device=cpu"] + list(extra))


def white_psnr(scene_dir: Path) -> float:
    """PSNR of an all-white prediction of a scene's test frames (what an empty field renders)."""
    errs = []
    for f in sorted((scene_dir / "test").glob("*.png")):
        rgba = np.asarray(Image.open(f), dtype=np.float64) / 255
        over_white = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
        errs.append(((over_white - 1) ** 2).mean())
    return float(np.mean([-10 * np.log10(e) for e in errs]))


def test_cli_fit_then_add_writes_every_scene_and_keeps_shared_parts_frozen(scenes, tmp_path):
    fit, new = scenes
    run = tmp_path / "run"
    runner = CliRunner()
    args = sum((["--set", s] for s in TINY), [])
    r = runner.invoke(app, ["many", "fit", str(fit), "--out", str(run), "--preset", "fast", "--mesh", "24",
                            "--no-progress", "--device", "cpu"] + args)
    assert r.exit_code == 0, r.output
    store = RunStore(run)
    assert store.scene_names() == [f"scene_0_{i:04d}" for i in range(4)]
    shared_before = (run / "shared.pt").read_bytes()
    for name in store.scene_names():
        m = json.loads((store.scene_dir(name) / "metrics.json").read_text())
        assert m["steps"] == 150 and m["stage"] == "fit"
        # the field learned something: its renders beat an empty (white) scene by a margin
        assert m["psnr"] > white_psnr(fit / name) + 3.0, (name, m["psnr"], white_psnr(fit / name))
        frames = sorted(p.name for p in (store.scene_dir(name) / "test").glob("*.png"))
        assert frames == sorted(p.name for p in (fit / name / "test").glob("*.png"))
        img = Image.open(store.scene_dir(name) / "test" / frames[0])
        assert img.mode == "RGBA" and img.size == (24, 24)
    assert any((store.scene_dir(n) / "mesh.ply").is_file() for n in store.scene_names())

    r = runner.invoke(app, ["many", "add", str(new), "--run", str(run), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (run / "shared.pt").read_bytes() == shared_before          # stage 2 never touches the shared parts
    added = json.loads((store.scene_dir("scene_7_0000") / "metrics.json").read_text())
    assert added["stage"] == "add" and added["steps"] == 100
    assert added["psnr"] > white_psnr(new / "scene_7_0000") + 3.0
    saved = store.load_scene("scene_7_0000")
    assert saved["shared_digest"] == shared_digest(_load_shared(store))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["scenes"] == 5

    # a second `add` skips what is done; changing the shared structure is refused with the fix
    stamp = (store.scene_dir("scene_7_0000") / "metrics.json").stat().st_mtime_ns
    assert runner.invoke(app, ["many", "add", str(new), "--run", str(run), "--no-progress"]).exit_code == 0
    assert (store.scene_dir("scene_7_0000") / "metrics.json").stat().st_mtime_ns == stamp
    r = runner.invoke(app, ["many", "add", str(new), "--run", str(run), "--set", "triplane.bases=3"])
    assert r.exit_code == 2 and "triplane" in r.output and "Traceback" not in r.output
    # fitting into a folder that holds a run is refused, not overwritten
    r = runner.invoke(app, ["many", "fit", str(fit), "--out", str(run), "--preset", "fast"])
    assert r.exit_code == 2 and "--force" in r.output
    assert (run / "shared.pt").read_bytes() == shared_before


def _load_shared(store: RunStore) -> SharedParts:
    shared = SharedParts(store.read_config())
    shared.load_state_dict(store.load_shared()["shared"])
    return shared


def test_resume_after_a_kill_ends_exactly_where_an_uninterrupted_run_ends(scenes, tmp_path, monkeypatch):
    fit, _ = scenes
    cfg = tiny("shared", "checkpoint_minutes=0")                      # checkpoint after every step
    fit_scenes(fit, tmp_path / "whole", cfg, progress=False)

    real_loss, calls = training.scenes_loss, {"n": 0}

    def killed_at_step_30(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training, "scenes_loss", killed_at_step_30)
    with pytest.raises(KeyboardInterrupt):
        fit_scenes(fit, tmp_path / "cut", cfg, progress=False)
    monkeypatch.setattr(training, "scenes_loss", real_loss)
    assert RunStore(tmp_path / "cut").load_shared()["step"] == 29
    with pytest.raises(DataError, match="already holds a run"):
        fit_scenes(fit, tmp_path / "cut", cfg, progress=False)
    fit_scenes(fit, tmp_path / "cut", cfg, resume=True, progress=False)

    whole, cut = RunStore(tmp_path / "whole"), RunStore(tmp_path / "cut")
    a, b = whole.load_shared(), cut.load_shared()
    assert a["step"] == b["step"] == 300                                # 4 scenes x 150 steps / 2 per step
    for key in a["shared"]:
        assert torch.allclose(a["shared"][key], b["shared"][key], atol=1e-6), key
    for name in whole.scene_names():
        pa, pb = whole.load_scene(name), cut.load_scene(name)
        assert pb["steps"] == 150
        assert all(torch.allclose(pa["params"][k], pb["params"][k], atol=1e-6) for k in pa["params"])


def test_add_needs_a_finished_stage_one(scenes, tmp_path):
    fit, new = scenes
    with pytest.raises(DataError, match="no checkpoint to resume"):
        fit_scenes(fit, tmp_path / "none", tiny(), resume=True, progress=False)
    with pytest.raises(DataError, match="not a many-scene run"):
        add_scenes(new, tmp_path / "none", progress=False)


def test_unseen_scene_in_stage_two_reaches_independent_tri_plane_quality(scenes, tmp_path):
    """Stage 2 trains only weights + micro planes; it must match a full independent tri-plane trained the same
    number of steps from the same kind of start (the mean of the fitted scenes). Measured: 29.1 vs 29.3 dB. With
    4 micro channels of 16 instead of 8 the shared scene owns 4x fewer bytes but lags by ~1.8 dB here."""
    fit, new = scenes
    psnr = {}
    for rep in ("shared", "independent"):
        cfg = tiny(rep, "triplane.micro_channels=8", "triplane.macro_channels=8", "add.iterations=300")
        fit_scenes(fit, tmp_path / rep, cfg, progress=False)
        psnr[rep] = add_scenes(new, tmp_path / rep, progress=False)["per_scene"]["scene_7_0000"]["psnr"]
    assert psnr["shared"] >= psnr["independent"] - 0.5, psnr
    assert psnr["independent"] > 26.0, psnr                              # and both actually learned the scene


DIST_SCRIPT = """
import sys
from unrender.recon.many_scenes import apply_overrides, fit_scenes, preset
cfg = apply_overrides(preset("fast"), sys.argv[3:])
fit_scenes(sys.argv[1], sys.argv[2], cfg, progress=False)
"""


def test_two_processes_shard_scenes_and_agree_on_shared_parts(scenes, tmp_path):
    fit, _ = scenes
    script = tmp_path / "fit.py"
    script.write_text(DIST_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(script), str(fit), str(tmp_path / "run")] + TINY + ["device=cpu"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    store = RunStore(tmp_path / "run")
    digest = shared_digest(_load_shared(store))
    saved = {name: store.load_scene(name) for name in store.scene_names()}
    assert len(saved) == 4
    # each scene lived on one rank, trained its 150 steps there, and saw the same shared parts as rank 0's
    assert sorted(s["rank"] for s in saved.values()) == [0, 0, 1, 1]
    assert all(s["steps"] == 150 and s["done"] for s in saved.values())
    assert all(s["shared_digest"] == digest for s in saved.values())
    assert store.load_shared()["step"] == 150                          # 2 scenes per rank x 150 / 2 per step


def test_latent_mode_trains_its_autoencoder_then_scenes_in_latent_space(scenes, tmp_path):
    fit, new = scenes
    cfg = tiny("latent", "latent.autoencoder_steps=300", "latent.width=16")
    fit_scenes(fit, tmp_path / "run", cfg, progress=False)
    store = RunStore(tmp_path / "run")
    assert store.load_shared()["history"][0]["autoencoder_psnr"] > 20.0
    summary = add_scenes(new, tmp_path / "run", progress=False)
    added = summary["per_scene"]["scene_7_0000"]
    assert added["stage"] == "add" and added["representation"] == "latent"
    assert added["psnr"] > white_psnr(new / "scene_7_0000") + 3.0, added
    img = Image.open(store.scene_dir("scene_7_0000") / "test" / "r_0.png")
    assert img.mode == "RGBA" and img.size == (24, 24)


def test_joint_latent_fit_keeps_training_the_autoencoder_and_its_background(scenes, tmp_path):
    fit, _ = scenes
    extra = ["latent.autoencoder_steps=50", "latent.width=8", "fit.steps_per_scene=20"]
    fit_scenes(fit, tmp_path / "frozen", tiny("latent", *extra), progress=False)
    fit_scenes(fit, tmp_path / "joint", tiny("latent", *extra, "latent.joint_lr=0.01"), progress=False)
    frozen, joint = (RunStore(tmp_path / r).load_shared()["shared"] for r in ("frozen", "joint"))
    ae_keys = [k for k in frozen if k.startswith("autoencoder.") and k != "autoencoder.white_latent"]
    # same seed, same pretraining: only the joint run's scene fitting moved the autoencoder
    assert max(float((frozen[k] - joint[k]).abs().max()) for k in ae_keys) > 1e-3
    shared = SharedParts(tiny("latent", *extra, "latent.joint_lr=0.01"))
    shared.load_state_dict(joint)
    white_latent = shared.autoencoder.white_latent.clone()
    shared.autoencoder.set_white_latent(24)
    assert torch.allclose(white_latent, shared.autoencoder.white_latent, atol=1e-6)   # the background followed
    frozen_parts = SharedParts(tiny("latent", *extra))
    assert len(shared.trainable()) > len(frozen_parts.trainable())
