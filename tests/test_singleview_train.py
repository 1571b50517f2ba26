"""Single-view training, resume, time budget, prediction, CLI and 2-process DDP on a tiny generated collection."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from unrender.cli_singleview import register
from unrender.data.collection import read_collection_index, synthesize_collection
from unrender.errors import DataError, InputError
from unrender.geometry.primitives import icosphere
from unrender.io.images import read_image, write_png
from unrender.io.mesh_files import load_mesh
from unrender.metrics.geometry import chamfer_distance, sample_surface
from unrender.singleview.batches import DIBRSamples, ImplicitSamples, batch_cameras
from unrender.singleview.predict import load_predictor, predict_files, prepare_images
from unrender.singleview.train_config import apply_overrides, config_from_dict, config_to_dict, lr_factor, preset
from unrender.singleview.training import CHECKPOINT, build_model, train_singleview

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Three chairs (train / val / test: one each), 4 views of 32^2."""
    return synthesize_collection(tmp_path_factory.mktemp("coll") / "c", categories=["chair"], objects=3, views=4,
                                 resolution=32, seed=0)


def tiny(model, *overrides):
    return apply_overrides(preset("fast", model), ["val_samples=2", "device=cpu", *overrides])


@pytest.fixture(scope="module")
def dibr_run(collection, tmp_path_factory):
    """DIB-R overfitted for 8 steps of 4 images to the one training chair."""
    run = tmp_path_factory.mktemp("runs") / "dibr"
    cfg = tiny("dibr", "epochs=8", "batch_size=4", "samples_per_object=4", "lr=2e-3", "dibr.symmetry=auto")
    return train_singleview(collection, run, cfg, progress=False)


def training_object(collection):
    index = read_collection_index(collection)
    return index.model_dir(*index.objects("train")[0])


def chamfer_to(mesh, gt):
    p, _ = sample_surface(mesh.vertices, mesh.faces, 4000, seed=1)
    q, _ = sample_surface(gt.vertices, gt.faces, 4000, seed=2)
    return chamfer_distance(p, q)


# ------------------------------------------------------------------------------------------------ data
def test_samples_are_seeded_per_epoch_and_shaped(collection):
    ds = DIBRSamples(collection, "train", target_views=2, samples_per_object=3, seed=5)
    a, again = ds[1], ds[1]
    assert a["image"].shape == (3, 32, 32) and a["masks"].shape == (2, 32, 32) and a["rgb"].shape == (2, 32, 32, 3)
    assert torch.equal(a["rgb"][0].permute(2, 0, 1), a["image"])  # view 0 of the targets is the input view
    assert torch.equal(a["image"], again["image"]) and a["view"] == again["view"]
    views = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        views.add(ds[1]["view"])
    assert len(views) > 1  # another epoch draws other views
    cams = batch_cameras(torch.utils.data.default_collate([a, again]), 32, 32)
    assert len(cams) == 4 and torch.allclose(cams.c2w[0], a["c2w"][0])
    imp = ImplicitSamples(collection, "train", cache_dir=collection / "cache", sdf_samples=2000, query_points=64,
                          surface_points=32)
    item = imp[0]
    assert item["points"].shape == (64, 3) and item["sdf"].shape == (64,) and item["surface"].shape == (32, 3)
    assert (item["sdf"] < 0).any() and (item["sdf"] > 0).any()


def test_input_jitter_moves_and_rescales_only_the_input_view(collection):
    plain = DIBRSamples(collection, "train", target_views=2, samples_per_object=8, seed=5)
    moved = DIBRSamples(collection, "train", target_views=2, samples_per_object=8, seed=5, input_shift=3)
    lit = DIBRSamples(collection, "train", target_views=2, samples_per_object=8, seed=5, input_brightness=0.5)
    shifts, factors = set(), []
    for i in range(8):
        a, b, c = plain[i], moved[i], lit[i]
        assert a["view"] == b["view"] == c["view"]
        assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["rgb"], c["rgb"])  # targets untouched
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.equal(b["image"][:, 3 + dy:29 + dy, 3 + dx:29 + dx], a["image"][:, 3:29, 3:29])]
        assert len(found) >= 1  # the object is the same, moved by at most 3 pixels
        shifts.add(found[0])
        m = a["masks"][0] > 0.999  # inside the object: colours scaled by one factor; outside: untouched
        assert torch.equal(c["image"][:, ~(a["masks"][0] > 0)], a["image"][:, ~(a["masks"][0] > 0)])
        ratio = c["image"][:, m] / a["image"][:, m].clamp(min=1e-3)
        ok = (a["image"][:, m] > 0.05) & (c["image"][:, m] < 0.999)
        assert 0.5 - 1e-4 <= ratio[ok].min() and ratio[ok].max() <= 1.5 + 1e-4 and ratio[ok].std() < 1e-3
        factors.append(float(ratio[ok].mean()))
    assert len(shifts) > 1 and max(abs(f - 1) for f in factors) > 0.1


def test_query_mix_draws_each_group_in_its_share(collection):
    from unrender.geometry.sdf_samples import cached_sdf_samples

    kw = dict(cache_dir=collection / "cache", sdf_samples=2000, query_points=200, surface_points=8)
    mixed = ImplicitSamples(collection, "train", query_mix=(0.0, 0.25, 0.25, 0.5), **kw)
    samples = cached_sdf_samples(mixed.dirs[0] / "mesh.obj", collection / "cache", 2000, seed=mixed.seed)
    lookup = {tuple(p.tolist()): int(g) for p, g in zip(samples.points.float(), samples.group)}
    groups = np.bincount([lookup[tuple(p.tolist())] for p in mixed[0]["points"]], minlength=4)
    assert groups.tolist() == [0, 50, 50, 100]  # 1 % of the cached samples are uniform, half the queries here
    plain = ImplicitSamples(collection, "train", query_mix=(), **kw)
    assert np.bincount([lookup[tuple(p.tolist())] for p in plain[0]["points"]], minlength=4)[3] < 20
    with pytest.raises(InputError, match="query_mix"):
        ImplicitSamples(collection, "train", query_mix=(-1.0, 1.0), **kw)


def test_config_round_trip_and_bad_overrides():
    cfg = apply_overrides(preset("fast", "implicit"), ["implicit.widths=8,16", "epochs=3", "preload=false"])
    assert config_from_dict(config_to_dict(cfg)) == cfg and cfg.implicit.widths == (8, 16) and not cfg.preload
    with pytest.raises(InputError, match="unknown field"):
        apply_overrides(cfg, ["dibr.nope=1"])
    with pytest.raises(InputError, match="best_metric"):
        apply_overrides(preset("fast", "dibr"), ["best_metric=sdf_l1"])
    with pytest.raises(InputError, match="mesh_coarse_resolution.*power of two"):
        apply_overrides(cfg, ["implicit.mesh_resolution=64", "implicit.mesh_coarse_resolution=17"])
    assert apply_overrides(cfg, ["implicit.mesh_resolution=65", "implicit.mesh_coarse_resolution=17"])


# ------------------------------------------------------------------------------------------------ DIB-R
def test_dibr_training_lowers_the_loss_and_writes_the_run(dibr_run):
    hist = dibr_run.history
    assert dibr_run.stopped == "completed" and dibr_run.epochs_completed == 8 and dibr_run.steps == 8
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"]
    assert max(h["val_iou"] for h in hist) > hist[0]["val_iou"]
    run = dibr_run.run_dir
    for name in ("config.json", "history.json", "metrics.png", CHECKPOINT, "best.pt"):
        assert (run / name).is_file(), name
    assert read_image(run / "metrics.png").shape[0] > 100
    saved = json.loads((run / "history.json").read_text())
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["metrics"]["iou"] == pytest.approx(max(h["val_iou"] for h in saved["epochs"]))


def test_predict_reproduces_the_training_object(dibr_run, collection, tmp_path):
    obj = training_object(collection)
    gt = load_mesh(obj / "mesh.obj")
    files = predict_files([obj / "image" / "0001.png"], dibr_run.run_dir, tmp_path / "pred")
    assert [f.name for f in files] == ["0001.obj", "0001.glb"] and all(f.is_file() for f in files)
    pred = load_mesh(files[0])
    assert pred.vertices.shape == (642, 3) and load_mesh(files[1]).faces.shape == (1280, 3)
    sphere = icosphere(3, radius=0.5)  # the untrained model's prediction
    assert chamfer_to(pred, gt) < 0.6 * chamfer_to(sphere, gt)


def test_dibr_run_measures_the_mirror_plane_and_predicts_symmetric_meshes(dibr_run, collection, tmp_path):
    saved = json.loads((dibr_run.run_dir / "config.json").read_text())
    assert saved["dibr"]["symmetry"] == "x"  # "auto" resolved on the chairs' point clouds (symmetric about x = 0)
    obj = training_object(collection)
    pred = load_mesh(predict_files([obj / "image" / "0002.png"], dibr_run.run_dir, tmp_path / "p")[0])
    mirrored = pred.vertices * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.cdist(mirrored, pred.vertices).min(1).values.max() < 1e-3  # OBJ digits, cdist rounding
    assert pred.vertices[:, 0].abs().max() > 0.1


def test_predict_uses_alpha_as_the_mask(dibr_run, collection, tmp_path):
    obj = training_object(collection)
    rgb, mask = read_image(obj / "image" / "0002.png"), read_image(obj / "mask" / "0002.png")[..., :1]
    noisy = torch.where(mask > 0.5, rgb, torch.rand(rgb.shape, generator=torch.Generator().manual_seed(0)))
    write_png(tmp_path / "rgba.png", torch.cat([noisy, mask], -1))  # object over noise, alpha = its mask
    predictor = load_predictor(dibr_run.run_dir, device="cpu")
    plain, with_alpha, no_alpha = (predictor.predict(img, srgb=True)[0].vertices
                                   for img in (rgb, read_image(tmp_path / "rgba.png"), noisy))
    assert (plain - with_alpha).abs().max() < 0.02  # composited over white as in training
    assert (plain - no_alpha).abs().max() > 2 * (plain - with_alpha).abs().max()  # the noise matters without alpha
    wide = torch.nn.functional.interpolate(rgb.permute(2, 0, 1)[None], size=(64, 96)).permute(0, 2, 3, 1)
    x = prepare_images(wide, (32, 32))
    assert x.shape == (1, 3, 32, 32) and x[0, :, 0, 0].min() > 0.99  # padded to a square with the background


def test_predict_rejects_unreadable_images_clearly(dibr_run, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png"):
        predict_files([bad], dibr_run.run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    good = tmp_path / "good.png"
    write_png(good, torch.ones(32, 32, 3))
    with pytest.raises(DataError, match="best.pt"):
        predict_files([good], tmp_path, tmp_path / "out")
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["predict", str(bad), "--run", str(dibr_run.run_dir), "--out",
                                      str(tmp_path / "cli")])
    assert result.exit_code == 2 and "broken.png" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------ implicit
def test_implicit_training_lowers_the_loss(collection, tmp_path):
    cfg = tiny("implicit", "epochs=4", "batch_size=4", "samples_per_object=4", "lr=2e-3",
               "implicit.sdf_samples=4000", "implicit.query_points=512", "implicit.mesh_resolution=25",
               "implicit.mesh_coarse_resolution=7")
    r = train_singleview(collection, tmp_path / "run", cfg, progress=False)
    losses = [h["train_loss"] for h in r.history]
    assert r.steps == 4 and np.mean(losses[-2:]) < 0.8 * losses[0]
    assert all(0 <= h["val_sign_accuracy"] <= 1 and 0 <= h["val_transformer"] < 2 for h in r.history)
    assert len(list((tmp_path / "run" / "sdf_cache").glob("*.npz"))) == 2  # the train and the val chair
    meshes = load_predictor(tmp_path / "run", device="cpu").predict(torch.rand(2, 40, 40, 4))
    assert len(meshes) == 2 and all(m.vertices.shape[-1] == 3 for m in meshes)


def test_implicit_chamfer_validation_keeps_the_chosen_level_with_the_best_checkpoint(collection, tmp_path):
    cfg = tiny("implicit", "epochs=2", "batch_size=4", "samples_per_object=2", "implicit.sdf_samples=4000",
               "implicit.query_points=256", "best_metric=chamfer", "implicit.validation_levels=5.0,0.02",
               "implicit.validation_resolution=17", "implicit.validation_coarse_resolution=5")
    r = train_singleview(collection, tmp_path / "run", cfg, progress=False)
    # Level 5 lies outside the cube (no surface: scored as the cube's half-size), so 0.02 must win.
    assert all(h["val_chamfer_level"] == 0.02 and 0 < h["val_chamfer"] < 0.6 for h in r.history)
    assert r.best_metric == "chamfer" and r.best_value == min(h["val_chamfer"] for h in r.history)
    predictor = load_predictor(tmp_path / "run", device="cpu")
    assert predictor.config.implicit.mesh_level == 0.02
    # predict extracts at that level: the same mesh as extract_mesh(level=0.02), not the zero level's.
    from unrender.singleview import extract_mesh

    image = torch.rand(40, 40, 4, generator=torch.Generator().manual_seed(0))
    m = predictor.config.implicit
    x = prepare_images(image[None], predictor.image_size, predictor.background)[0]
    at = {lv: extract_mesh(predictor.model, x, m.mesh_resolution, m.mesh_bounds,
                           coarse_resolution=m.mesh_coarse_resolution, level=lv) for lv in (0.0, 0.02)}
    got = predictor.predict(image)[0]
    assert torch.equal(got.vertices, at[0.02].vertices) and not torch.equal(got.vertices, at[0.0].vertices)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["implicit"]["mesh_level"] == 0.0
    with pytest.raises(InputError, match="validation_coarse_resolution"):
        apply_overrides(cfg, ["implicit.validation_resolution=18"])


# ------------------------------------------------------------------------------------------------ runs
def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(collection, tmp_path):
    cfg = tiny("dibr", "epochs=2", "batch_size=2", "samples_per_object=4", "dibr.widths=8,16,32",
               "dibr.subdivisions=2", "lr_schedule=cosine", "ema_decay=0.5")
    whole = train_singleview(collection, tmp_path / "whole", cfg, progress=False)
    last_lr = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=True)["optimizer"]["param_groups"][0]["lr"]
    assert last_lr == pytest.approx(cfg.lr * lr_factor(cfg, 3, 4, 0.0)) and last_lr < 0.2 * cfg.lr  # step 4 of 4
    part = train_singleview(collection, tmp_path / "part", apply_overrides(cfg, ["max_steps=3"]), progress=False)
    assert part.stopped == "max_steps" and part.steps == 3
    state = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=True)
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 1, 3)  # mid-epoch
    with pytest.raises(InputError, match="--force"):
        train_singleview(collection, tmp_path / "part", cfg, progress=False)
    resumed = train_singleview(collection, tmp_path / "part", cfg, resume=True, progress=False)
    assert resumed.stopped == "completed" and resumed.steps == whole.steps == 4
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert resumed.history[-1]["train_loss"] == pytest.approx(whole.history[-1]["train_loss"], rel=1e-4)
    # the weight average survives the kill too (restarting it from the resumed weights would differ)
    avg_a, avg_b = (torch.load(tmp_path / run / CHECKPOINT, weights_only=True)["average"] for run in ("whole", "part"))
    assert avg_a["updates"] == avg_b["updates"] == 4
    assert all(torch.allclose(avg_a["model"][k], avg_b["model"][k], atol=1e-5) for k in avg_a["model"])
    assert any(not torch.allclose(avg_a["model"][k], a[k], atol=1e-4) for k in a)  # it is not the last weights


def test_weight_average_follows_its_formula_and_judges_the_best_checkpoint(collection, tmp_path):
    from unrender.singleview.weight_average import WeightAverage

    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, decay=0.9)
    expected = {k: v.clone() for k, v in net.state_dict().items()}
    for t in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        avg.update(net)
        d = min(0.9, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * v for k, v in net.state_dict().items()}
    assert all(torch.allclose(avg.model.state_dict()[k], expected[k], atol=1e-6) for k in expected)
    with pytest.raises(InputError, match="ema_decay"):
        tiny("dibr", "ema_decay=1.0")
    cfg = tiny("dibr", "epochs=1", "batch_size=2", "samples_per_object=4", "dibr.widths=8,16,32",
               "dibr.subdivisions=2", "ema_decay=0.9")
    train_singleview(collection, tmp_path / "run", cfg, progress=False)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["state_dict"]
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert all(torch.equal(best[k], state["average"]["model"][k]) for k in best)
    assert any(not torch.equal(best[k], state["model"][k]) for k in best)


def test_cli_time_budget_stops_and_keeps_the_best_checkpoint(collection, tmp_path):
    app = typer.Typer()
    register(app)
    run = tmp_path / "run"
    args = ["train", "singleview", "--data", str(collection), "--out", str(run), "--model", "dibr", "--preset",
            "fast", "--epochs", "100", "--batch-size", "2", "--max-minutes", "0.0001", "--no-progress", "--set",
            "samples_per_object=4", "--set", "val_samples=2", "--set", "dibr.widths=8,16,32", "--set",
            "dibr.subdivisions=2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "time budget" in result.output and (run / "best.pt").is_file()
    saved = json.loads((run / "history.json").read_text())
    assert saved["stopped"] == "time budget" and len(saved["epochs"]) == 1 and saved["epochs"][0]["epoch"] < 1
    assert load_predictor(run, device="cpu").predict(torch.rand(32, 32, 3))[0].faces.shape == (320, 3)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output and "Traceback" not in again.output


# ------------------------------------------------------------------------------------------------ DDP
DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from unrender.singleview.train_config import apply_overrides, preset
from unrender.singleview.training import train_singleview
cfg = apply_overrides(preset("fast", "dibr"), ["epochs=1", "batch_size=1", "samples_per_object=4", "val_samples=1",
                                               "device=cpu", "dibr.widths=8,16,32", "dibr.subdivisions=2"])
r = train_singleview(sys.argv[1], sys.argv[2], cfg, progress=False)
torch.save({"state": r.model.state_dict(), "steps": r.steps, "seen": r.images_seen},
           os.path.join(sys.argv[3], "rank%s.pt" % os.environ["RANK"]))
"""


def test_two_process_gloo_ddp_keeps_identical_weights(collection, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(script), str(collection), str(tmp_path / "run"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 2 and r0["seen"] == 4  # 4 samples sharded over 2 ranks, batch 1
    torch.manual_seed(0)
    init = build_model(tiny("dibr", "dibr.widths=8,16,32", "dibr.subdivisions=2")).state_dict()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in init)
    assert any(not torch.equal(r0["state"][k], init[k]) for k in init)  # and they did train
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["world_size"] == 2 and (tmp_path / "run" / "best.pt").is_file()
