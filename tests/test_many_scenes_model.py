"""Many-scene building blocks: tri-plane sampling against a slow reference, the shared/independent tri-planes,
rendering through them against closed forms, the scene box, config and run-folder errors."""

import math

import pytest
import torch

from unrender.cameras import Camera, orbit_poses
from unrender.errors import DataError, InputError, UnrenderError
from unrender.geometry.triplane import PLANE_AXES, sample_triplanes, total_variation
from unrender.recon.many_scenes import (ManyScenesConfig, RunStore, SceneParams, SharedParts, apply_overrides,
                                        find_scenes, preset, render_rays, scene_box, scene_planes)
from unrender.recon.many_scenes.config import config_from_dict, config_to_dict


def reference_triplanes(planes, points, bounds):
    """Loop-by-loop bilinear sampling (texel centres at (i + 0.5) / R of [-1, 1], zeros outside)."""
    s_count, _, c, r, _ = planes.shape
    out = torch.zeros(s_count, points.shape[1], c, dtype=planes.dtype)
    for s in range(s_count):
        for m in range(points.shape[1]):
            q = 2 * (points[s, m] - bounds[0]) / (bounds[1] - bounds[0]) - 1
            for k, (a, b) in enumerate(PLANE_AXES):
                x = ((float(q[a]) + 1) * r - 1) / 2          # column (width) from the first coordinate
                y = ((float(q[b]) + 1) * r - 1) / 2          # row (height) from the second
                x0, y0 = math.floor(x), math.floor(y)
                for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                        if 0 <= xi < r and 0 <= yi < r:
                            out[s, m] += wx * wy * planes[s, k, :, yi, xi]
    return out


def test_sample_triplanes_matches_loop_reference_inside_and_outside_the_box():
    g = torch.Generator().manual_seed(1)
    planes = torch.randn(2, 3, 3, 5, 5, generator=g, dtype=torch.float64)
    bounds = torch.tensor([[-0.5, 0.0, 1.0], [1.5, 1.0, 3.0]], dtype=torch.float64)
    # points spread over a slightly larger box, so some fall outside (zero padding) and near edges
    points = bounds[0] - 0.2 + torch.rand(2, 40, 3, generator=g, dtype=torch.float64) * (bounds[1] - bounds[0] + 0.4)
    got = sample_triplanes(planes, points, bounds)
    assert torch.allclose(got, reference_triplanes(planes, points, bounds), atol=1e-12)
    far_outside = bounds[1] + 1.0
    assert torch.equal(sample_triplanes(planes, far_outside.expand(2, 1, 3), bounds), torch.zeros(2, 1, 3,
                                                                                                   dtype=planes.dtype))


def test_sample_triplanes_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(2)
    planes = torch.randn(1, 3, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    points = (torch.rand(1, 6, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    bounds = torch.tensor([[-1.0] * 3, [1.0] * 3], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p, x: sample_triplanes(p, x, bounds), (planes, points))


def test_sample_triplanes_rejects_bad_shapes():
    with pytest.raises(InputError, match=r"\[S,3,C,R,R\]"):
        sample_triplanes(torch.zeros(3, 4, 8, 8), torch.zeros(1, 2, 3), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    with pytest.raises(InputError, match="points"):
        sample_triplanes(torch.zeros(2, 3, 4, 8, 8), torch.zeros(1, 2, 3), torch.tensor([[-1.0] * 3, [1.0] * 3]))


def test_total_variation_of_a_ramp():
    ramp = torch.arange(6.0)[None, :].expand(6, 6)                  # +1 along width, constant along height
    assert float(total_variation(ramp)) == pytest.approx(1.0)
    assert float(total_variation(2 * ramp)) == pytest.approx(4.0)


def test_shared_scene_planes_are_micro_then_weighted_bases_and_store_fewer_bytes():
    cfg = preset("fast")
    shared, scenes = SharedParts(cfg), [SceneParams(cfg), SceneParams(cfg)]
    planes = scene_planes(shared, scenes)
    cm = cfg.triplane.micro_channels
    assert torch.equal(planes[1, :, :cm], scenes[1].micro)
    manual = sum(scenes[1].weights[k] * shared.bases[k] for k in range(cfg.triplane.bases))
    assert torch.allclose(planes[1, :, cm:], manual, atol=1e-6)
    independent = SceneParams(apply_overrides(cfg, ["representation=independent"]))
    assert independent.planes.shape == planes.shape[1:]
    # micro (4 of 16 channels) + 8 weights: about 4x fewer own bytes than a full tri-plane
    assert independent.parameter_bytes() / scenes[0].parameter_bytes() > 3.9
    (planes[:, :, cm:].sum() * 2).backward()                         # gradients reach weights and bases
    assert scenes[0].weights.grad is not None and shared.bases.grad.abs().sum() > 0


class ConstantField(torch.nn.Module):
    """Decoder stand-in: density ``sigma`` and colour ``rgb`` everywhere."""

    def __init__(self, sigma, rgb):
        super().__init__()
        self.sigma, self.rgb = sigma, torch.tensor(rgb)

    def forward(self, feats):
        return torch.full((*feats.shape[:-1], 1), self.sigma), self.rgb.expand(*feats.shape[:-1], 3)


def test_render_rays_through_a_constant_density_box_matches_beer_lambert():
    box = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 1.0, 1.0]]])          # 2 long along x, 1 along y and z
    origins = torch.tensor([[[-3.0, 0.5, 0.5], [0.5, -4.0, 0.5], [0.5, 5.0, 5.0]]])
    directions = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])
    sigma, rgb = 0.7, [0.2, 0.4, 0.9]
    color, opacity = render_rays(torch.zeros(1, 3, 2, 4, 4), ConstantField(sigma, rgb), origins, directions, box,
                                 samples=16)
    for i, length in enumerate([2.0, 1.0, 0.0]):                        # the last ray misses the box
        a = 1 - math.exp(-sigma * length)
        assert float(opacity[0, i, 0]) == pytest.approx(a, abs=1e-5)
        expected = torch.tensor(rgb) * a + (1 - a)                       # over white
        assert torch.allclose(color[0, i], expected, atol=1e-5)


def test_scene_box_is_centred_where_the_cameras_look():
    target = (1.0, -2.0, 0.5)
    cam = Camera.from_fov(40.0, 32, 32, orbit_poses(12, 3.0, target=target, seed=3))
    box = scene_box(cam, scale=1.0)
    assert torch.allclose((box[0] + box[1]) / 2, torch.tensor(target), atol=1e-4)
    half = 3.0 * math.tan(math.radians(20.0))
    assert torch.allclose((box[1] - box[0]) / 2, torch.full((3,), half), atol=1e-4)


def test_config_round_trip_overrides_and_errors():
    cfg = apply_overrides(preset("fast", "independent"), ["triplane.bases=5", "add.iterations=7"])
    assert (cfg.representation, cfg.triplane.bases, cfg.add.iterations) == ("independent", 5, 7)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(InputError, match="representation"):
        preset("fast", "voxels")
    with pytest.raises(InputError, match="preset"):
        preset("huge")
    with pytest.raises(UnrenderError, match="render.samples"):
        apply_overrides(ManyScenesConfig(), ["render.samples=0"])


def test_find_scenes_and_run_store_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_scenes(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no scenes"):
        find_scenes(tmp_path / "empty")
    with pytest.raises(DataError, match="config.json is missing"):
        RunStore(tmp_path / "empty").read_config()
    store = RunStore(tmp_path / "run")
    store.scene_dir("a").mkdir(parents=True)
    store.scene_path("a").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot be read"):
        store.scene_done("a")


def test_latent_camera_rays_pass_through_block_centres_and_bad_factors_are_refused():
    from unrender.recon.many_scenes.latent import LatentAutoencoder, latent_camera

    cam = Camera.from_fov(50.0, 32, 24, orbit_poses(2, 3.0, seed=1))
    low = latent_camera(cam, 4)
    assert (low.width, low.height) == (8, 6)
    o_low, d_low = low.rays()
    # latent pixel (x=2, y=1) covers full-res pixels 8..11 x 4..7; its centre is (10, 6) from the corner
    _, d_full = cam.rays(torch.tensor([[[10.0, 6.0]], [[10.0, 6.0]]]))
    assert torch.allclose(d_low[:, 1, 2], d_full[:, 0], atol=1e-6)
    with pytest.raises(InputError, match="latent.factor"):
        latent_camera(Camera.from_fov(50.0, 30, 30, orbit_poses(1, 3.0)), 4)
    with pytest.raises(InputError, match="power of two"):
        LatentAutoencoder(factor=3)
