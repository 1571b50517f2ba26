"""DVR collection layout: procedural synthesis, writer/reader round trip, camera conventions, clear errors."""

import hashlib
import math
import shutil

import numpy as np
import pytest
import torch
import trimesh

from unrender.cameras import Camera, look_at
from unrender.color import linear_to_srgb
from unrender.data.collection import (camera_to_dvr, dvr_project, dvr_to_camera, read_collection_index,
                                      read_dvr_object, read_metadata, read_occupancy_points, synthesize_collection)
from unrender.data.collection.categories import CATEGORIES
from unrender.data.collection.part_sdf import Box, Cylinder, Ellipsoid, Frustum, Part, mesh_parts, union_sdf
from unrender.data.collection.synthesize import random_cameras, split_objects
from unrender.errors import DataError, InputError
from unrender.geometry.inside import closest_points, inside_mesh, winding_number
from unrender.io.images import read_image
from unrender.io.mesh_files import load_mesh

VIEWS, RES, OBJECTS = 6, 48, 3
NAMES = ["chair", "table", "airplane", "lamp"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    out = tmp_path_factory.mktemp("coll") / "c"
    return synthesize_collection(out, categories=4, objects=OBJECTS, views=VIEWS, resolution=RES, seed=3,
                                 grid_resolution=64, target_faces=2000, occupancy_samples=4000)


def _all_models(root):
    return sorted((c.name, m.name) for c in root.iterdir() if c.is_dir() for m in c.iterdir() if m.is_dir())


def test_index_splits_disjoint_and_cover_every_object(collection):
    index = read_collection_index(collection)
    assert index.categories == sorted(c.synset for c in CATEGORIES[:4])
    assert sorted(index.names.values()) == sorted(NAMES)
    assert read_metadata(collection)["03001627"] == "chair"
    sets = {s: set(index.objects(s)) for s in ("train", "val", "test")}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sorted(index.objects("all")) == _all_models(collection)
    for cat in index.categories:  # 3 objects per category: one per split
        for s in sets:
            assert sum(1 for c, _ in sets[s] if c == cat) == 1
        for s in sets:  # the softras_ lists DIB-R's loader reads hold the same ids
            assert (collection / cat / f"softras_{s}.lst").read_text() == (collection / cat / f"{s}.lst").read_text()
    assert all(len(m) == 32 and int(m, 16) >= 0 for _, m in index.objects("all"))


def test_split_fractions():
    rng = np.random.default_rng(0)
    for n, expect in ((1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (10, (7, 1, 2)), (40, (28, 4, 8))):
        s = split_objects(n, rng)
        assert (len(s["train"]), len(s["val"]), len(s["test"])) == expect
        assert sorted(s["train"] + s["val"] + s["test"]) == list(range(n))


def test_read_object_round_trip(collection):
    index = read_collection_index(collection)
    cat, model = index.objects("test")[0]
    obj = read_dvr_object(index.model_dir(cat, model))
    assert (obj.category, obj.model) == (cat, model)
    assert obj.images.shape == (VIEWS, RES, RES, 3) and obj.masks.shape == (VIEWS, RES, RES)
    assert float(obj.masks.min()) == 0.0 and float(obj.masks.max()) == 1.0  # coverage: 1 inside, 0 far away
    # Linear images come back to the file's bytes; the background is white.
    raw = read_image(index.model_dir(cat, model) / "image" / "0002.png")
    assert torch.allclose(linear_to_srgb(obj.images[2]), raw, atol=1.5 / 255)
    near_object = torch.nn.functional.max_pool2d(obj.masks[:, None], 3, 1, 1)[:, 0] > 0  # antialiased rims
    assert torch.allclose(obj.images[~near_object], torch.ones(3), atol=1e-3)
    # The cameras read back are the ones that rendered (same seeds), so they project identically.
    ci, j = [c.synset for c in CATEGORIES].index(cat), _model_ids(cat).index(model)
    truth = random_cameras(VIEWS, RES, np.random.default_rng([3, ci, j, 1]))
    pts = obj.points[:500]
    assert torch.allclose(obj.camera.world_to_pixel(pts), truth.world_to_pixel(pts), atol=1e-3)
    assert obj.points.shape == (30_000, 3) and obj.normals.shape == (30_000, 3)
    assert obj.mesh_path is not None and obj.mesh_path.name == "mesh.obj"
    sub = read_dvr_object(index.model_dir(cat, model), views=[4, 1], load_points=False)
    assert sub.view_ids == [4, 1] and torch.equal(sub.images[0], obj.images[4]) and sub.points is None


def _model_ids(cat):
    """The model ids synthesize_collection gives objects 0..OBJECTS-1 of ``cat`` for seed 3."""
    return [hashlib.md5(f"unrender/{cat}/3/{j}".encode()).hexdigest() for j in range(OBJECTS)]


def test_surface_points_project_inside_masks(collection):
    index = read_collection_index(collection)
    for cat, model in index.objects("all"):
        obj = read_dvr_object(index.model_dir(cat, model))
        pix = obj.camera.world_to_pixel(obj.points)  # [V,P,2]
        col, row = pix[..., 0].floor().long(), pix[..., 1].floor().long()
        assert bool(((col >= 0) & (col < RES) & (row >= 0) & (row < RES)).all())
        hit = (obj.masks[torch.arange(VIEWS)[:, None], row, col] > 0).float()  # pixels the object covers
        assert float(hit.mean()) > 0.97 and float(hit.mean(1).min()) > 0.95, (cat, hit.mean(1))
        # Honest control: the image is mostly background, and a vertically flipped reading of v misses.
        assert float((obj.masks > 0).float().mean()) < 0.5
        flipped = obj.masks[torch.arange(VIEWS)[:, None], RES - 1 - row, col] > 0
        assert float(flipped.float().mean()) < 0.9
        # No silhouette touches the image border (the object stays in view).
        assert float(obj.masks[:, [0, -1], :].sum() + obj.masks[:, :, [0, -1]].sum()) == 0


def test_dvr_matrices_mean_what_the_docs_say(collection):
    index = read_collection_index(collection)
    d = index.model_dir(*index.objects("train")[0])
    cams = np.load(d / "cameras.npz")
    obj = read_dvr_object(d, views=[0])
    p = obj.points[:200].double().numpy()
    uv = dvr_project(p, cams["world_mat_0"], cams["camera_mat_0"], cams["scale_mat_0"])
    pix = obj.camera.world_to_pixel(torch.from_numpy(p).float())[0].double().numpy()
    assert np.allclose((uv + 1) * RES / 2, pix, atol=1e-3)  # u, v = -1 at the left / top edge
    x_cam = (cams["world_mat_0"] @ np.c_[p, np.ones(len(p))].T)[2]
    assert (x_cam > 0).all()  # OpenCV: in front of the camera means z > 0
    assert np.allclose(cams["world_mat_inv_0"] @ cams["world_mat_0"], np.eye(4), atol=1e-9)
    assert np.allclose(cams["camera_mat_inv_0"] @ cams["camera_mat_0"], np.eye(4), atol=1e-9)


def test_camera_conversion_round_trip_with_offset_principal_point():
    c2w = look_at(torch.tensor([[1.0, 0.5, 2.0], [-2.0, 1.0, 0.3]], dtype=torch.float64), dtype=torch.float64)
    cam = Camera(c2w, torch.tensor([70.0, 60.0]), torch.tensor([65.0, 58.0]), torch.tensor([33.0, 29.5]),
                 torch.tensor([22.0, 25.0]), 64, 48).to(dtype=torch.float64)
    world, k = camera_to_dvr(cam)
    back = dvr_to_camera(world, k, 64, 48, dtype=torch.float64)
    for name in ("c2w", "fx", "fy", "cx", "cy"):
        assert torch.allclose(getattr(back, name), getattr(cam, name), atol=1e-9), name
    pts = torch.randn(50, 3, dtype=torch.float64) * 0.3
    for i in range(2):
        uv = dvr_project(pts.numpy(), world[i], k[i])
        px = cam[i].world_to_pixel(pts)[0].numpy()
        assert np.allclose((uv + 1) * np.array([64, 48]) / 2, px, atol=1e-9)


def test_scale_mat_similarity_is_folded_into_the_pose():
    cam = Camera.from_fov(50.0, 32, 32, look_at(torch.tensor([[0.3, 1.0, 2.5]], dtype=torch.float64),
                                                dtype=torch.float64)).to(dtype=torch.float64)
    world, k = camera_to_dvr(cam)
    a = 0.7
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    scale_mat = np.eye(4)
    scale_mat[:3, :3], scale_mat[:3, 3] = 1.8 * rot, [0.2, -0.1, 0.3]
    obj_cam = dvr_to_camera(world, k, 32, 32, scale_mats=scale_mat[None], dtype=torch.float64)
    x_obj = torch.randn(20, 3, dtype=torch.float64) * 0.2
    x_world = x_obj @ torch.from_numpy(scale_mat[:3, :3]).T + torch.from_numpy(scale_mat[:3, 3])
    assert torch.allclose(obj_cam.world_to_pixel(x_obj), cam.world_to_pixel(x_world), atol=1e-8)
    mirrored = world.copy()
    mirrored[0, 0] *= -1
    with pytest.raises(DataError, match="determinant"):
        dvr_to_camera(mirrored, k, 32, 32)


def test_meshes_watertight_unit_sized_and_point_clouds_on_them(collection):
    for cat, model in read_collection_index(collection).objects("all"):
        d = collection / cat / model
        mesh = load_mesh(d / "mesh.obj")
        tm = trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)
        assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0, (cat, model)
        assert len(tm.split(only_watertight=False)) == 1
        ext = mesh.vertices.amax(0) - mesh.vertices.amin(0)
        assert abs(float(ext.max()) - 1.0) < 1e-5
        assert float((mesh.vertices.amax(0) + mesh.vertices.amin(0)).abs().max()) < 1e-5
        assert mesh.vertex_colors is not None and float(mesh.face_normals(normalized=False).norm(dim=1).min()) > 0
        pc = np.load(d / "pointcloud.npz")
        pts = torch.from_numpy(pc["points"].astype(np.float32))
        nrm = torch.from_numpy(pc["normals"].astype(np.float32))
        assert float(closest_points(mesh.vertices, mesh.faces, pts[:2000]).distance.max()) < 1e-3
        assert torch.allclose(nrm.norm(dim=1), torch.ones(len(nrm)), atol=2e-3)
        outward = ~inside_mesh(mesh.vertices, mesh.faces, pts[:2000] + 0.005 * nrm[:2000])
        assert float(outward.float().mean()) > 0.97
        q, inside = read_occupancy_points(d)
        assert q.shape == (4000, 3) and float(q.abs().max()) <= 0.55
        ref = winding_number(mesh.vertices, mesh.faces, q[:300]) > 0.5
        assert torch.equal(ref, inside[:300])


def test_primitive_sdfs_are_exact_where_claimed():
    p = np.random.default_rng(0).uniform(-1.5, 1.5, (3000, 3))
    box = Box((0.1, 0.0, 0.0), (0.5, 0.3, 0.2))
    q = np.abs(p - [0.1, 0, 0]) - [0.5, 0.3, 0.2]
    ref = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    assert np.allclose(box.sdf(p), ref)
    cyl = Cylinder((0, -0.5, 0), (0, 0.5, 0), 0.3)
    d = np.stack([np.hypot(p[:, 0], p[:, 2]) - 0.3, np.abs(p[:, 1]) - 0.5], 1)
    assert np.allclose(cyl.sdf(p), np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(1), 0))
    assert np.allclose(Ellipsoid((0, 0, 0), (0.4, 0.4, 0.4)).sdf(p), np.linalg.norm(p, axis=1) - 0.4)
    cone = Frustum((0, 0, 0), 1.0, 0.5, 0.5)  # a frustum with equal radii is a cylinder
    assert np.allclose(cone.sdf(p), Cylinder((0, 0, 0), (0, 1, 0), 0.5).sdf(p))
    parts = [Part(box, (1, 0, 0)), Part(cyl, (0, 1, 0))]
    u, which = union_sdf(parts, p)
    assert np.allclose(u, np.minimum(box.sdf(p), cyl.sdf(p))) and set(which.tolist()) == {0, 1}


def test_every_category_meshes_watertight_and_connected():
    for ci, cat in enumerate(CATEGORIES):
        for j in range(2):
            mesh = mesh_parts(cat.builder(np.random.default_rng([7, ci, j])), resolution=64, target_faces=1500)
            tm = trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)
            assert tm.is_watertight and tm.volume > 0 and len(tm.split(only_watertight=False)) == 1, cat.name
            assert mesh.num_faces <= 4 * 1500  # decimated (marching cubes gives ~20k here)


def test_same_seed_same_bytes(tmp_path):
    a = synthesize_collection(tmp_path / "a", categories=["lamp"], objects=1, views=2, resolution=16,
                              grid_resolution=32, occupancy_samples=100)
    b = synthesize_collection(tmp_path / "b", categories=["lamp"], objects=1, views=2, resolution=16,
                              grid_resolution=32, occupancy_samples=100)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_bad_arguments_and_existing_output(tmp_path):
    with pytest.raises(InputError, match="categories"):
        synthesize_collection(tmp_path / "x", categories=99)
    with pytest.raises(InputError, match="unknown category"):
        synthesize_collection(tmp_path / "x", categories=["teapot"])
    with pytest.raises(InputError, match="twice"):
        synthesize_collection(tmp_path / "x", categories=["lamp", "03636649"])
    with pytest.raises(InputError, match="objects"):
        synthesize_collection(tmp_path / "x", objects=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(DataError, match="force"):
        synthesize_collection(tmp_path / "full", categories=1, objects=1)


@pytest.fixture()
def broken(collection, tmp_path):
    """A copy of one object (plus its category's lists) to damage."""
    index = read_collection_index(collection)
    cat, model = index.objects("train")[0]
    dst = tmp_path / "c"
    shutil.copytree(collection / cat / model, dst / cat / model)
    (dst / cat / "train.lst").write_text(model + "\n")
    return dst, cat, model


def test_clear_errors_on_malformed_objects(broken):
    root, cat, model = broken
    d = root / cat / model
    (d / "image" / "0005.png").rename(root / "spare.png")
    with pytest.raises(DataError, match=r"has 6 cameras but .* holds 5 images"):
        read_dvr_object(d)
    (root / "spare.png").rename(d / "image" / "0005.png")
    (d / "image" / "0003.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0003.png could not be read"):
        read_dvr_object(d)
    with np.load(d / "cameras.npz") as f:
        mats = {k: f[k] for k in f.files if k != "camera_mat_4"}
    np.savez(d / "cameras.npz", **mats)
    with pytest.raises(DataError, match="lacks camera_mat_4"):
        read_dvr_object(d)
    (d / "cameras.npz").unlink()
    with pytest.raises(DataError, match="cameras.npz is missing"):
        read_dvr_object(d)


def test_clear_errors_on_malformed_collections(broken):
    root, cat, model = broken
    (root / cat / "train.lst").write_text(model + "\nmissing_model\n")
    with pytest.raises(DataError, match="lists model 'missing_model'"):
        read_collection_index(root)
    (root / cat / "train.lst").unlink()
    with pytest.raises(DataError, match="no category folder with split lists"):
        read_collection_index(root)
    with pytest.raises(DataError, match="has no split list"):
        read_collection_index(root, categories=[cat])
    with pytest.raises(DataError, match="does not exist"):
        read_collection_index(root / "nowhere")
