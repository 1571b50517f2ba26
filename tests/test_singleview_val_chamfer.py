"""DIB-R validation by Chamfer distance: ground-truth points in the samples, the distance, and best.pt picked by it."""

import json
import math

import pytest
import torch

from unrender.data.collection import read_collection_index, synthesize_collection
from unrender.errors import InputError
from unrender.geometry.primitives import icosphere
from unrender.io.mesh_files import load_mesh
from unrender.metrics.geometry import sample_surface
from unrender.singleview.batches import DIBRSamples
from unrender.singleview.train_config import apply_overrides, preset
from unrender.singleview.training import predicted_mesh_chamfer, train_singleview

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return synthesize_collection(tmp_path_factory.mktemp("coll") / "c", categories=["table"], objects=3, views=4,
                                 resolution=32, seed=1)


def test_chamfer_of_concentric_spheres_is_the_radius_gap():
    pred = icosphere(4, radius=0.5)
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(2, 2500, 3, generator=gen)
    truth = torch.stack([0.6 * d[0] / d[0].norm(dim=-1, keepdim=True), 0.5 * d[1] / d[1].norm(dim=-1, keepdim=True)])
    cd = predicted_mesh_chamfer(pred.vertices.expand(2, -1, -1), pred.faces, truth)
    assert cd.shape == (2,)
    assert abs(float(cd[0]) - 0.1) < 0.005          # every nearest distance is about the 0.1 radius gap
    # the same sphere: only the sampling spacing remains, the mean nearest distance of random points of density
    # N / A on a surface, 1 / (2 sqrt(N / A)) = 0.0177 for N = 2500 on a sphere of radius 0.5
    assert abs(float(cd[1]) - 1 / (2 * math.sqrt(2500 / (4 * math.pi * 0.5 ** 2)))) < 0.002
    # the samples of the prediction are seeded: the same seed repeats the value
    again = predicted_mesh_chamfer(pred.vertices.expand(2, -1, -1), pred.faces, truth)
    assert torch.equal(cd, again)


def test_dibr_samples_carry_points_of_the_true_surface(collection):
    ds = DIBRSamples(collection, "val", surface_points=300, fixed_views=True)
    item = ds[0]
    assert item["surface"].shape == (300, 3) and item["surface"].dtype == torch.float32
    index = read_collection_index(collection)
    gt = load_mesh(index.model_dir(*index.objects("val")[0]) / "mesh.obj")
    on_mesh, _ = sample_surface(gt.vertices, gt.faces, 20000, seed=0)
    nearest = torch.cdist(item["surface"], on_mesh.float()).amin(1)
    assert float(nearest.max()) < 0.03
    assert "surface" not in DIBRSamples(collection, "val", fixed_views=True)[0]   # only when asked for


def test_best_checkpoint_is_picked_by_the_validation_chamfer(collection, tmp_path):
    cfg = apply_overrides(preset("fast", "dibr"), ["val_samples=2", "device=cpu", "epochs=3", "batch_size=2",
                                                  "samples_per_object=2", "dibr.widths=8,16,32",
                                                  "dibr.subdivisions=2", "best_metric=chamfer"])
    result = train_singleview(collection, tmp_path / "run", cfg, progress=False)
    values = [h["val_chamfer"] for h in result.history]
    assert len(values) == 3 and all(0.0 < v < 1.0 and math.isfinite(v) for v in values)
    assert result.best_metric == "chamfer" and result.best_value == pytest.approx(min(values))
    best = json.loads((tmp_path / "run" / "history.json").read_text())
    assert best["best_metric"] == "chamfer" and best["best_value"] == pytest.approx(min(values))
    # A metric the model does not compute is refused (implicit has no silhouette IoU; it does have chamfer).
    with pytest.raises(InputError, match="best_metric"):
        train_singleview(collection, tmp_path / "bad", apply_overrides(cfg, ["model=implicit", "best_metric=iou"]),
                         progress=False)
