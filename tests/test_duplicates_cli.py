"""`unrender synth --kind duplicates` and `unrender duplicates`: wiring and error reporting (the solver is tested
in test_duplicates_poses.py)."""

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from unrender.cli import app


def test_synth_duplicates_then_bad_masks_exit_with_one_sentence(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["synth", str(tmp_path / "s"), "--kind", "duplicates", "--copies", "3", "--resolution", "96"])
    assert r.exit_code == 0, r.output
    assert len(np.unique(np.asarray(Image.open(tmp_path / "s" / "instances.png")))) == 4
    Image.fromarray(np.ones((48, 48), np.uint8)).save(tmp_path / "small.png")
    r = runner.invoke(app, ["duplicates", str(tmp_path / "s" / "image.png"), "--masks", str(tmp_path / "small.png"),
                            "--fov", "40", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "small.png" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "poses.json").exists()


def test_duplicates_end_to_end_writes_every_output(tmp_path):
    """A tiny scene through the whole command: poses, registration, joint reconstruction, outputs, --gt scores."""
    import json

    from unrender.data.duplicates import synthesize_duplicates
    from unrender.io.mesh_files import load_mesh

    scene = synthesize_duplicates(tmp_path / "s", copies=5, resolution=384, seed=1, family="mug", yaw_range_deg=60.0)
    tiny = ["recon.pass1.iterations=40", "recon.pass1.tet_resolution=20", "recon.pass2.iterations=10",
            "recon.pass2.texture_resolution=64", "recon.hull_resolution=48", "bootstrap_pass1=20",
            "bootstrap_pass2=5", "view_size=48", "register.yaws=8", "register.keep=1", "register.steps=5"]
    args = ["duplicates", str(scene / "image.png"), "--masks", str(scene / "instances.png"), "--fov", "40",
            "--out", str(tmp_path / "o"), "--preset", "fast", "--gt", str(scene), "--no-progress"]
    r = CliRunner().invoke(app, args + [a for s in tiny for a in ("--set", s)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "o"
    for name in ("poses.json", "mesh/mesh.obj", "mesh/mesh.mtl", "mesh/mesh.glb", "light/probe.hdr", "rerender.png",
                 "relit/light_0.png", "relit/light_2.png", "novel/000.png", "metrics.json", "report.html"):
        assert (out / name).exists(), name
    poses = json.loads((out / "poses.json").read_text())
    posed = poses["posed"]
    assert len(posed) == 5 and sum(posed) >= 2 and poses["solver"]["model"] == "upright"
    for T, ok in zip(poses["object_to_world"], posed):
        assert (T is not None) == ok
        if ok:
            R = np.array(T)[:3, :3]
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-6)
    m = json.loads((out / "metrics.json").read_text())
    assert m["copies"] == 5 and m["copies_posed"] == sum(posed)
    assert 5.0 < m["rerender_psnr_in_masks"] < 60.0
    assert m["poses"]["mean_rotation_deg"] < 20.0  # feature-posed copies of a narrow turn range: ~2 degrees
    assert 0.0 <= m["shape"]["f_score@0.02"] <= 1.0 and np.isfinite(m["albedo_psnr"])
    assert Image.open(out / "rerender.png").size == Image.open(scene / "image.png").size
    assert load_mesh(out / "mesh" / "mesh.glb").num_faces > 0
    assert "report" in r.output and "posed" in r.output
