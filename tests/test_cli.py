"""The command line: synth determinism, render of a user mesh, demo, refusals."""

import hashlib
import json

import torch
from typer.testing import CliRunner

from unrender.cli import app
from unrender.io.images import read_image
from unrender.io.mesh_files import save_mesh
from unrender.geometry.procedural_objects import procedural_object

runner = CliRunner()


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_same_seed_same_bytes_and_layout(tmp_path):
    args = ["synth", "--kind", "object", "--views", "4", "--resolution", "48", "--seed", "3"]
    r1 = runner.invoke(app, args[:1] + [str(tmp_path / "a")] + args[1:])
    r2 = runner.invoke(app, args[:1] + [str(tmp_path / "b")] + args[1:])
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        meta = json.loads((tmp_path / "a" / f"transforms_{split}.json").read_text())
        assert len(meta["frames"]) == n and "camera_angle_x" in meta
        img = read_image(tmp_path / "a" / (meta["frames"][0]["file_path"] + ".png"))
        assert img.shape == (48, 48, 4)
        assert 0.02 < img[..., 3].mean() < 0.9  # the object is in view and not filling it
    for name in ("gt/mesh.obj", "gt/mesh.mtl", "gt/mesh.glb", "gt/probe.hdr", "gt/texture_kd.png"):
        assert (tmp_path / "a" / name).exists(), name
    r3 = runner.invoke(app, ["synth", str(tmp_path / "c"), "--views", "4", "--resolution", "48", "--seed", "4"])
    assert tree_digest(tmp_path / "c") != a and r3.exit_code == 0


def test_synth_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    r = runner.invoke(app, ["synth", str(out), "--views", "1", "--resolution", "16"])
    assert r.exit_code == 2
    assert str(out) in r.output and "--force" in r.output
    assert (out / "keep.txt").read_text() == "previous run"


def test_render_user_mesh_keeps_world_frame(tmp_path):
    mesh = procedural_object("mug", 1)
    mesh.vertices = mesh.vertices + torch.tensor([5.0, -2.0, 1.0])  # far from the origin
    save_mesh(mesh, tmp_path / "mug.obj")
    r = runner.invoke(app, ["render", str(tmp_path / "mug.obj"), str(tmp_path / "ds"), "--views", "2",
                            "--resolution", "32"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "ds" / "transforms_train.json").read_text())
    img = read_image(tmp_path / "ds" / (meta["frames"][0]["file_path"] + ".png"))
    assert img[..., 3].mean() > 0.02  # cameras aim at the mesh where it is
    scene = json.loads((tmp_path / "ds" / "gt" / "scene.json").read_text())
    assert abs(scene["object_center"][0] - 5.0) < 0.6


def test_render_missing_mesh_is_one_clear_error(tmp_path):
    r = runner.invoke(app, ["render", str(tmp_path / "nope.obj"), str(tmp_path / "ds")])
    assert r.exit_code == 2
    assert "nope.obj" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "ds").exists()


def test_demo_synthesizes_reconstructs_and_reports(tmp_path):
    tiny = ["hull_resolution=32", "pass1.iterations=10", "pass1.tet_resolution=12", "pass1.field_levels=2",
            "pass1.field_max_res=16", "pass2.iterations=4", "pass2.texture_resolution=64", "light_resolution=8"]
    args = ["demo", "--out", str(tmp_path / "demo"), "--resolution", "32", "--views", "4"]
    r = runner.invoke(app, args + sum((["--set", t] for t in tiny), []))
    assert r.exit_code == 0, r.output
    sheet = read_image(tmp_path / "demo" / "contact_sheet.png")
    assert sheet.shape[0] >= 32 and sheet.shape[1] >= 64
    assert sheet.std() > 0.01
    report = tmp_path / "demo" / "recon" / "report.html"
    assert f"report: {report}" in r.output and report.exists()
    assert (tmp_path / "demo" / "recon" / "mesh" / "mesh.glb").exists()
    r2 = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo2"), "--set", "pass1.bogus=1"])
    assert r2.exit_code == 2 and "bogus" in r2.output and not (tmp_path / "demo2").exists()


def test_synth_layouts_read_back_with_the_same_cameras(tmp_path):
    from unrender.data.layouts import read_dataset

    base = tmp_path / "blender"
    assert runner.invoke(app, ["synth", str(base), "--views", "8", "--resolution", "32", "--seed", "5"]).exit_code == 0
    ref = {f"{s}_{n}": c for s in ("train", "val", "test")
           for n, c in zip(read_dataset(base, s).names, read_dataset(base, s).camera.c2w)}
    for layout in ("colmap-bin", "llff", "idr"):
        out = tmp_path / layout
        r = runner.invoke(app, ["synth", str(out), "--views", "8", "--resolution", "32", "--seed", "5",
                                "--layout", layout])
        assert r.exit_code == 0, r.output
        ds = read_dataset(out, "all")
        assert len(ds) == len(ref) and (out / "gt" / "mesh.obj").exists()
        for name, c2w in zip(ds.names, ds.camera.c2w):
            assert torch.allclose(c2w, ref[name], atol=1e-4), (layout, name)
    r = runner.invoke(app, ["synth", str(tmp_path / "x"), "--layout", "ply"])
    assert r.exit_code == 2 and "layout" in r.output


def test_synth_collection_writes_a_readable_dvr_collection(tmp_path):
    from unrender.data.collection import read_collection_index, read_dvr_object

    out = tmp_path / "coll"
    r = runner.invoke(app, ["synth", str(out), "--kind", "collection", "--categories", "2", "--objects", "3",
                            "--views", "4", "--resolution", "32"])
    assert r.exit_code == 0, r.output
    index = read_collection_index(out)
    objs = index.objects("all")
    assert len(objs) == 6 and len({cat for cat, _ in objs}) == 2
    obj = read_dvr_object(index.model_dir(*objs[0]))
    assert obj.images.shape == (4, 32, 32, 3) and obj.masks.shape == (4, 32, 32)
    bad = runner.invoke(app, ["synth", str(tmp_path / "x"), "--kind", "galaxies"])
    assert bad.exit_code != 0 and "--kind" in bad.output


def test_synth_scenes_writes_one_nerf_synthetic_folder_per_scene(tmp_path):
    from unrender.recon.many_scenes import find_scenes, read_scene

    r = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), "--kind", "scenes", "--scenes", "2", "--views", "5",
                                 "--resolution", "16", "--seed", "3"])
    assert r.exit_code == 0, r.output
    sources = find_scenes(tmp_path / "s")
    assert [s.name for s in sources] == ["scene_3_0000", "scene_3_0001"]
    scene = read_scene(sources[1])
    assert scene.train_rgba.shape == (5, 16, 16, 4) and len(scene.test_names) == 1
