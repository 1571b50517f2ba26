"""Copies as views: crop cameras, rendering with the light fixed in the photo frame, scoring against ground truth."""

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from unrender.cameras import Camera, look_at
from unrender.data.duplicates import gt_object_to_camera, synthesize_duplicates
from unrender.geometry.primitives import icosphere
from unrender.io.mesh_files import load_mesh
from unrender.mesh import Mesh
from unrender.recon.duplicates import read_duplicates_input
from unrender.recon.duplicates.gt_metrics import align_to_ground_truth, ground_truth_metrics
from unrender.recon.duplicates.instance_views import crop_box, hull_views, instance_views
from unrender.recon.duplicates.joint import render_in_photo_frame
from unrender.render.lights.environment import EnvironmentLight
from unrender.render.render_mesh import render_mesh


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return synthesize_duplicates(tmp_path_factory.mktemp("joint") / "s", copies=4, resolution=256, seed=2,
                                 family="mug", yaw_range_deg=360.0)


def test_crop_views_see_each_copy_where_its_mask_is(scene):
    data = read_duplicates_input(scene / "image.png", scene / "instances.png", fov=40)
    gt = gt_object_to_camera(scene)
    views, boxes = instance_views(data, gt, range(4), size=64)
    mesh = load_mesh(scene / "gt" / "mesh.obj")
    with torch.no_grad():
        out = render_in_photo_frame(mesh, views.camera, None, shading="albedo")
    for k in range(4):
        known = views.weight[k] > 0
        a, m = (out.alpha[k] > 0.5) & known, (views.mask[k] > 0.5) & known
        assert float((a & m).sum() / (a | m).sum()) > 0.85, k  # area-resampled masks vs the true silhouette
        assert boxes[k].side > 0
    hull = hull_views(data, gt, range(4), longest=128)
    assert hull.mask.shape == (4, 128, 128, 1) and bool((hull.mask >= views.mask.new_zeros(1)).all())


def test_crop_box_is_square_and_holds_the_mask():
    m = np.zeros((40, 50), bool)
    m[10:20, 5:35] = True
    b = crop_box(m, 0.1)
    assert b.x0 <= 5 and b.x0 + b.side >= 35 and b.y0 <= 10 and b.y0 + b.side >= 20 and b.side == 36


def test_photo_frame_render_matches_a_moved_camera_under_uniform_light():
    # Under a uniform environment the light's orientation does not matter: both ways must agree exactly.
    mesh = icosphere(3, radius=0.4)
    mesh = Mesh(mesh.vertices * torch.tensor([1.0, 0.6, 0.8]), mesh.faces)
    c2o = look_at((0.3, 0.8, 2.5), (0.05, 0, 0))
    cam = Camera.from_fov(40, 48, 48, c2o)
    light = EnvironmentLight.from_latlong(torch.full((16, 32, 3), 0.7), resolution=16)
    with torch.no_grad():
        light.build()
        a = render_in_photo_frame(mesh, cam, light)
        b = render_mesh(mesh, cam, light)
    assert torch.allclose(a.alpha, b.alpha, atol=1e-4) and torch.allclose(a.color, b.color, atol=1e-3)
    # ... and under a sky with a sun the copy's shading turns with the photo, not with the camera.
    sky = torch.full((16, 32, 3), 0.1)
    sky[2:5, 10:14] = 30.0
    sun = EnvironmentLight.from_latlong(sky, resolution=16)
    with torch.no_grad():
        sun.build()
        a, b = render_in_photo_frame(mesh, cam, sun), render_mesh(mesh, cam, sun)
    assert (a.color - b.color).abs().max() > 0.05


def test_alignment_undoes_a_similarity_and_scores_a_perfect_shape(scene):
    gt_mesh = load_mesh(scene / "gt" / "mesh.obj")
    gt = gt_object_to_camera(scene)
    # a prediction in another object frame: x_pred = s Q x_gt + c, its camera frame scaled by s too
    s, Q, c = 2.0, Rotation.from_euler("xyz", [20, -35, 10], degrees=True).as_matrix(), np.array([0.3, -0.2, 0.5])
    pred_mesh = Mesh((s * gt_mesh.vertices.double().numpy() @ Q.T + c), gt_mesh.faces)
    pred = gt.copy()
    for k in range(4):  # T_pred(x_pred) = s T_gt(x_gt)
        pred[k, :3, :3] = gt[k, :3, :3] @ Q.T
        pred[k, :3, 3] = s * gt[k, :3, 3] - gt[k, :3, :3] @ Q.T @ c
    aligned = align_to_ground_truth(pred_mesh, gt_mesh, pred, gt, np.ones(4, bool))
    # sample-based ICP (5,000 points per surface) lands within half a percent of the object's size
    assert (aligned.vertices - gt_mesh.vertices).abs().max() < 1e-2
    m = ground_truth_metrics(pred_mesh, pred, np.ones(4, bool), gt_mesh, gt)
    assert m["poses"]["mean_rotation_deg"] < 1e-3 and m["shape"]["f_score@0.01"] > 0.999
    assert np.isfinite(m["albedo_psnr"])
    assert json.dumps(m)  # plain JSON
