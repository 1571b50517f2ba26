"""Single-view evaluation: hand-computed metrics, DIB-R / LIST protocol wiring, baselines, table, CLI."""

import json
import math

import numpy as np
import pytest
import torch
import typer
from scipy import integrate
from typer.testing import CliRunner

from unrender.cameras import Camera, look_at
from unrender.cli_singleview_eval import eval_singleview
from unrender.data.collection import (read_collection_index, read_dvr_object, synthesize_collection,
                                      write_collection_lists, write_dvr_object)
from unrender.geometry.inside import winding_number
from unrender.geometry.primitives import box
from unrender.io.mesh_files import load_mesh, save_mesh
from unrender.mesh import Mesh
from unrender.singleview.baselines import MeanShapeBaseline, NearestNeighbourBaseline, SphereBaseline
from unrender.singleview.eval_metrics import (DIBRProtocol, GroundTruth, LISTProtocol, ground_truth_points,
                                              mesh_occupancy, point_set_scores, score_prediction, winding_numbers)
from unrender.singleview.evaluate import Predictor, evaluate_split, format_table

SIDE = 0.2  # ground-truth cube side: small, so that the predicted cube's edge bands are a large share of its area
SCALE = {"00000001": 1.25, "00000002": 1.45}  # predicted cube = ground truth scaled by this, per category
FAST_LIST = LISTProtocol(points=20_000, iou_samples=20_000)


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Airplanes and lamps (unlike each other and a sphere): 3 train, 1 val, 1 test object each."""
    return synthesize_collection(tmp_path_factory.mktemp("sv") / "coll", categories=["airplane", "lamp"], objects=5,
                                 views=4, resolution=32, seed=0, grid_resolution=48, target_faces=1000,
                                 occupancy_samples=0)


@pytest.fixture(scope="module")
def cube_collection(tmp_path_factory):
    """Two categories, one test object each: a cube of side SIDE (images are irrelevant to the cube predictor)."""
    root = tmp_path_factory.mktemp("cubes") / "coll"
    cam = Camera.from_fov(50.0, 16, 16, look_at((0.0, 0.0, 2.0)))
    splits = {"train": {}, "val": {}, "test": {}}
    for syn in SCALE:
        d = write_dvr_object(root / syn / f"cube{syn}", torch.full((1, 16, 16, 3), 0.5), torch.ones(1, 16, 16), cam)
        save_mesh(box((SIDE,) * 3), d / "mesh.obj")
        splits["test"][syn] = [f"cube{syn}"]
    write_collection_lists(root, splits, {"00000001": "small", "00000002": "large"})
    return root


class ScaledCube:
    """Predicts the ground-truth cube scaled by its category's factor (exercises the ``categories`` keyword)."""

    def predict(self, images, categories=None):
        return [box((SIDE * SCALE[c],) * 3) for c in categories]


class Oracle:
    """Returns the ground-truth mesh of the test object whose view-0 image it is given."""

    def __init__(self, root):
        index = read_collection_index(root)
        self.meshes = {}
        for cat, model in index.objects("test"):
            obj = read_dvr_object(index.model_dir(cat, model), views=[0], load_points=False)
            key = torch.cat([obj.images[0], obj.masks[0, :, :, None]], -1).numpy().tobytes()
            self.meshes[key] = load_mesh(index.model_dir(cat, model) / "mesh.obj")

    def predict(self, images):
        return [self.meshes[img.numpy().tobytes()] for img in images]


# ------------------------------------------------------------------------- closed forms for the cubes


def cube_expectations(k: float, thresholds) -> dict:
    """Continuous-surface values for a cube of side SIDE (gt) and the same cube scaled by ``k`` (pred).

    Half sides ``g = SIDE/2``, ``h = k g``, offset ``delta = h - g``. A ground-truth point lies inside the
    prediction at distance exactly ``delta`` from it. A point ``(h, y, z)`` of the prediction is at distance
    ``sqrt(delta^2 + a^2 + b^2)`` from the ground truth, ``a = max(|y| - g, 0)``: ``a = 0`` with probability
    ``1 - p``, ``p = delta / h``, else ``a ~ U(0, delta)``, independently of ``b``.
    """
    g = SIDE / 2
    h = k * g
    delta, p = h - g, (h - g) / h
    e1 = delta * (math.sqrt(2) + math.asinh(1)) / 2  # E sqrt(delta^2 + u^2), u ~ U(0, delta)
    e2 = integrate.dblquad(lambda u, v: math.sqrt(delta ** 2 + u * u + v * v), 0, delta, 0, delta)[0] / delta ** 2
    accuracy = (1 - p) ** 2 * delta + 2 * p * (1 - p) * e1 + p * p * e2
    accuracy_sq = delta ** 2 + 2 * p * delta ** 2 / 3  # E a^2 = p delta^2 / 3

    def quarter_disc(r):  # area of {u, v in [0, 1]: u^2 + v^2 < r^2}
        if r <= 1:
            return math.pi * r * r / 4
        if r >= math.sqrt(2):
            return 1.0
        w = math.sqrt(r * r - 1)
        return w + integrate.quad(lambda u: math.sqrt(r * r - u * u), w, 1)[0]

    f = {}
    for tau in thresholds:
        c = tau * tau - delta * delta
        if c <= 0:
            f[tau] = 0.0
            continue
        r = math.sqrt(c) / delta
        precision = (1 - p) ** 2 + 2 * p * (1 - p) * min(r, 1.0) + p * p * quarter_disc(r)
        f[tau] = 2 * precision / (precision + 1)  # recall = 1: every gt point is delta < tau away
    return {"chamfer_l1": (accuracy + delta) / 2, "chamfer_l2x1e4": 1e4 * (accuracy_sq + delta ** 2) / 2,
            "f": f, "iou": 1 / k ** 3, "delta": delta, "pred_area": 6 * (2 * h) ** 2}


# ------------------------------------------------------------------------------------------------ tests


def test_point_set_scores_match_hand_computation():
    # X: a 3x3 grid on z = 0; Y: the same grid lifted by 0.02, plus an outlier 5 above the origin.
    grid = np.array([[i, j, 0.0] for i in range(3) for j in range(3)])
    x, y = grid, np.vstack([grid + [0, 0, 0.02], [[0.0, 0.0, 5.0]]])
    cd1, f = point_set_scores(x, y, (0.01, 0.05))
    cd2, _ = point_set_scores(x, y, (0.05,), squared=True)
    assert cd1 == pytest.approx((0.02 + (9 * 0.02 + 5) / 10) / 2, rel=1e-12)   # mean of directed means: 0.269
    assert cd2 == pytest.approx((0.02 ** 2 + (9 * 0.02 ** 2 + 25) / 10) / 2, rel=1e-12)
    assert f[0.01] == 0.0 and f[0.05] == pytest.approx(2 * 1.0 * 0.9 / 1.9, rel=1e-12)  # P = 1, R = 9/10


def test_scaled_cubes_match_closed_form(cube_collection):
    taus_dibr, taus_list = (0.01, 0.02, 0.03, 0.04, 0.05), (0.005, 0.01, 0.05)
    n = 100_000
    report = evaluate_split(ScaledCube(), cube_collection, dibr=DIBRProtocol(points=n),
                            lst=LISTProtocol(points=n, iou_samples=n))
    assert [r.name for r in report.rows] == ["small", "large"]
    for row in report.rows:
        ex = cube_expectations(SCALE[row.category], taus_dibr + taus_list)
        m = row.metrics
        # Finite samples only add: the nearest of rho samples per unit area lies R away laterally, E R^2 =
        # 1/(pi rho), so a distance d becomes at most d + 1/(2 pi rho d) on average (and d^2 + 1/(pi rho)).
        slack = 1 / (2 * math.pi * (n / ex["pred_area"]) * ex["delta"])
        assert ex["chamfer_l1"] - 5e-5 <= m["dibr/chamfer_l1"] <= ex["chamfer_l1"] + slack + 5e-5
        assert m["list/chamfer_l2x1e4"] == pytest.approx(ex["chamfer_l2x1e4"], rel=0.01)
        for tau in taus_dibr:
            assert m[f"dibr/f@{tau:g}"] == pytest.approx(ex["f"][tau], abs=0.01), tau
        for tau in taus_list:
            assert m[f"list/f@{tau:g}"] == pytest.approx(ex["f"][tau], abs=0.01), tau
        assert m["list/iou"] == pytest.approx(ex["iou"], abs=0.006)
    small = cube_expectations(1.25, (0.03,))
    assert 0.9 < small["f"][0.03] < 0.95  # a threshold inside the distance range: the test sees precision
    overall = report.overall.metrics["dibr/chamfer_l1"]
    assert overall == pytest.approx(np.mean([r.metrics["dibr/chamfer_l1"] for r in report.rows]), rel=1e-12)
    # DIB-R's own 2,500 points: above the continuous value by no more than the sampling term.
    default = evaluate_split(ScaledCube(), cube_collection, protocol="dibr")
    for row in default.rows:
        ex = cube_expectations(SCALE[row.category], ())
        slack = 1 / (2 * math.pi * (2500 / ex["pred_area"]) * ex["delta"])
        assert ex["chamfer_l1"] - 5e-4 <= row.metrics["dibr/chamfer_l1"] <= ex["chamfer_l1"] + slack + 5e-4


def test_perfect_predictor_scores_the_sampling_floor(collection):
    oracle = Oracle(collection)
    assert isinstance(oracle, Predictor)
    report = evaluate_split(oracle, collection)
    m = report.overall.metrics
    assert report.overall.samples == 2 and report.overall.failures == 0
    assert m["list/iou"] == 1.0  # same mesh, same occupancy samples
    assert m["dibr/f@0.05"] > 0.99 and m["list/f@0.01"] > 0.99 and m["list/f@0.05"] == 1.0
    assert m["dibr/chamfer_l1"] < 0.015 and m["list/chamfer_l2x1e4"] < 0.2  # independent samples: not 0
    worse = evaluate_split(SphereBaseline(radius=0.3), collection, lst=FAST_LIST)
    assert worse.overall.metrics["dibr/chamfer_l1"] > 5 * m["dibr/chamfer_l1"]


def test_failed_prediction_is_scored_not_skipped():
    gt = GroundTruth.from_mesh(box((1.0, 1.0, 1.0)))
    empty = Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    s = score_prediction(empty, gt, DIBRProtocol(), FAST_LIST, seed=4)
    assert s.failed and s.metrics["list/iou"] == 0.0 and s.metrics["dibr/f@0.05"] == 0.0
    y = ground_truth_points(gt, 2500, seed=5)  # the gt sample score_prediction draws (seed + 1)
    expected = (np.linalg.norm(y, axis=1).min() + np.linalg.norm(y, axis=1).mean()) / 2  # vs the origin
    assert s.metrics["dibr/chamfer_l1"] == pytest.approx(expected, rel=1e-9)


def test_open_prediction_occupancy_by_winding_number():
    m = box((1.0, 1.0, 1.0))
    v, f = m.vertices.double().numpy(), m.faces.numpy()
    q = np.random.default_rng(0).random((400, 3)) * 1.4 - 0.7
    inside = (np.abs(q) < 0.5).all(1)
    assert (mesh_occupancy(v, f, q) == inside).all()  # closed: ray parity
    ref = winding_number(v, f[1:], q).numpy()  # one triangle missing: parity is undefined, |w| > 0.5 decides
    assert np.abs(winding_numbers(v, f[1:], q) - ref).max() < 1e-10
    holed = mesh_occupancy(v, f[1:], q)
    assert (holed == ((np.abs(ref) > 0.5) & (np.abs(q) <= 0.5).all(1))).all()
    assert (holed == inside).mean() > 0.97


def test_baselines_predict_meshes_and_mean_shape_beats_sphere(collection):
    index = read_collection_index(collection)
    sphere = SphereBaseline.fit(collection)
    mean = MeanShapeBaseline.fit(collection, resolution=32)
    nn = NearestNeighbourBaseline.fit(collection)
    radii = [np.linalg.norm(ground_truth_points(
        GroundTruth.from_mesh(load_mesh(index.model_dir(c, m) / "mesh.obj")), 10_000, i), axis=1).mean()
        for i, (c, m) in enumerate(index.objects("train"))]
    assert sphere.radius == pytest.approx(np.mean(radii), rel=1e-6)
    images = torch.rand(3, 32, 32, 4)
    cats = index.categories
    for meshes in (sphere.predict(images), mean.predict(images, categories=[cats[0], cats[1], "x"]),
                   nn.predict(images)):
        assert len(meshes) == 3 and all(isinstance(x, Mesh) and x.faces.shape[0] > 0 for x in meshes)
    by_cat = mean.predict(images[:2], categories=cats)
    assert not torch.equal(by_cat[0].vertices, by_cat[1].vertices)
    assert mean.predict(images[:1])[0] is mean.overall
    # Retrieval of a training image returns that very object's mesh.
    cat, model = index.objects("train")[1]
    obj = read_dvr_object(index.model_dir(cat, model), views=[2], load_points=False)
    got = nn.predict(torch.cat([obj.images, obj.masks[..., None]], -1))[0]
    assert torch.equal(got.vertices, load_mesh(index.model_dir(cat, model) / "mesh.obj").vertices)
    reports = {name: evaluate_split(b, collection, lst=FAST_LIST) for name, b in (("sphere", sphere), ("mean", mean))}
    for r_mean, r_sphere in zip(reports["mean"].rows, reports["sphere"].rows):
        assert r_mean.metrics["dibr/chamfer_l1"] < 0.7 * r_sphere.metrics["dibr/chamfer_l1"], r_mean.name
        assert r_mean.metrics["list/iou"] > r_sphere.metrics["list/iou"], r_mean.name


def test_table_has_a_row_per_category_plus_overall_and_json_round_trips(cube_collection):
    report = evaluate_split(ScaledCube(), cube_collection, dibr=DIBRProtocol(points=500), lst=FAST_LIST)
    dibr_title, dibr_table, list_title, list_table = format_table(report).split("\n\n")
    assert dibr_title.startswith("DIB-R protocol (500 points") and list_title.startswith("LIST protocol (20,000")
    lines = dibr_table.splitlines()
    assert lines[0] == "| category | n | CD-L1 | F@0.01 | F@0.02 | F@0.03 | F@0.04 | F@0.05 |"
    assert [ln.split(" | ")[0] for ln in lines[2:]] == ["| small (00000001)", "| large (00000002)", "| overall"]
    assert list_table.splitlines()[0] == "| category | n | CD-L2x1e4 | F@0.005 | F@0.01 | F@0.05 | IoU |"
    assert len(list_table.splitlines()) == 5
    assert lines[-1].split(" | ")[2] == f"{report.overall.metrics['dibr/chamfer_l1']:.4f}"
    data = json.loads(report.to_json())
    assert data["overall"]["metrics"]["dibr/chamfer_l1"] == report.overall.metrics["dibr/chamfer_l1"]
    assert len(data["samples"]) == 2 and data["settings"]["dibr"]["points"] == 500


def test_cli_evaluates_a_baseline_and_refuses_ambiguous_input(collection, tmp_path):
    app = typer.Typer()
    app.command()(eval_singleview)
    runner = CliRunner()
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["--baseline", "sphere", "--data", str(collection), "--protocol", "dibr",
                            "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "| airplane (02691156) |" in r.output and "| overall |" in r.output
    assert json.loads(out.read_text())["overall"]["samples"] == 2
    for args in ([], ["--baseline", "sphere", "--run", str(tmp_path)], ["--baseline", "cube"]):
        r = runner.invoke(app, args + ["--data", str(collection)])
        assert r.exit_code == 2 and "error:" in r.output, args
