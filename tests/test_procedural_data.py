import json
import math

import pytest
import torch

from unrender.data.nerf_synthetic import write_nerf_synthetic
from unrender.data.procedural_env import latlong_directions, random_environment
from unrender.data.procedural_textures import random_pbr_material
from unrender.io.images import read_image


def test_material_deterministic_and_in_range():
    a, b, c = random_pbr_material(5, 64), random_pbr_material(5, 64), random_pbr_material(6, 64)
    assert torch.equal(a.base_color, b.base_color) and torch.equal(a.orm, b.orm) and torch.equal(a.normal, b.normal)
    assert not torch.equal(a.base_color, c.base_color)
    for m in (a, c):
        assert m.base_color.shape == (64, 64, 3) and m.orm.shape == (64, 64, 3) and m.normal.shape == (64, 64, 3)
        assert 0 <= float(m.base_color.min()) and float(m.base_color.max()) <= 1
        rough = m.orm[..., 1]
        assert 0.2 - 1e-6 <= float(rough.min()) and float(rough.max()) <= 0.9 + 1e-6
        assert set(torch.unique(m.orm[..., 2]).tolist()) <= {0.0, 1.0}
        assert torch.allclose(m.normal.norm(dim=-1), torch.ones(64, 64), atol=1e-5)
        assert float(m.normal[..., 2].min()) > 0


def test_material_variety_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    mats = [random_pbr_material(s, 32) for s in range(12)]
    assert torch.equal(torch.rand(1), before)
    assert any(float(m.orm[..., 2].max()) == 1.0 for m in mats)  # some metallic regions
    assert sum(float(m.orm[..., 2].mean()) for m in mats) / len(mats) < 0.3  # mostly dielectric


def test_environment_hdr_and_deterministic():
    a, b = random_environment(2, 64, 128), random_environment(2, 64, 128)
    assert a.shape == (64, 128, 3) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, random_environment(3, 64, 128))
    assert float(a.min()) >= 0 and float(a.max()) > 20  # a sun well above 1
    # Sky (upper half) is brighter on average than the ground (lower half), excluding the sun.
    up, down = a[:32].clamp(max=5).mean(), a[32:].clamp(max=5).mean()
    assert up > down


def test_latlong_convention():
    d = latlong_directions(4, 8)
    assert d[0, :, 1].min() > 0.9  # row 0 looks up (theta = pi / 8)
    assert torch.allclose(d.norm(dim=-1), torch.ones(4, 8), atol=1e-6)
    mid = latlong_directions(3, 4)[1]  # theta = pi/2 row; column 1 has u = 0.375
    assert torch.allclose(mid[1], torch.tensor([math.sin(2 * math.pi * 0.375), 0.0,
                                               -math.cos(2 * math.pi * 0.375)]), atol=1e-6)


def test_write_nerf_synthetic(tmp_path):
    g = torch.Generator().manual_seed(0)
    c2w = torch.eye(4)
    c2w[2, 3] = 4.0
    frames = {"train": [(f"r_{i}", c2w, torch.rand(6, 5, 4, generator=g)) for i in range(2)],
              "test": [("r_0", c2w, torch.rand(6, 5, 4, generator=g))]}
    files = write_nerf_synthetic(tmp_path / "a", frames, 0.6911)
    files2 = write_nerf_synthetic(tmp_path / "b", frames, 0.6911)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in files2]
    meta = json.loads((tmp_path / "a" / "transforms_train.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(0.6911)
    assert [f["file_path"] for f in meta["frames"]] == ["./train/r_0", "./train/r_1"]
    assert meta["frames"][0]["transform_matrix"][2][3] == 4.0
    img = read_image(tmp_path / "a" / "train" / "r_1.png")
    assert img.shape == (6, 5, 4)
    assert (img - frames["train"][1][2]).abs().max() <= 0.5 / 255 + 1e-6
