"""Single-view evaluation of a collection split: any predictor, DIB-R's and LIST's protocols, per-category table.

A *predictor* is any object with ``predict(images) -> list[Mesh]`` (:class:`Predictor`): ``images`` is
``[B,H,W,4]`` float, linear RGB (as :func:`unrender.data.collection.read_dvr_object` returns it, composited
over the collection's background) plus alpha = the mask; it returns one mesh per image, in the collection's
canonical object frame (centred, longest side 1). A predictor whose ``predict`` also takes a keyword
``categories`` receives ``categories: list[str]`` (the category folder, i.e. synset id, of each image): the
collection knows the category of every test image, and category-level baselines
(:class:`unrender.singleview.baselines.MeanShapeBaseline`) need it. Predictors without that keyword are
called with the images alone.

:func:`evaluate_split` predicts every object of a split from ``views_per_object`` of its views and scores
each prediction with :func:`unrender.singleview.eval_metrics.score_prediction` (the definitions and their
sources are in that module's docstring). Rows: the mean of every metric over a category's predictions; the
``overall`` row is the mean of the category rows, as DIB-R's script ("Mean of ALL") and LIST's tables
average.

Example:
    >>> from unrender.singleview.baselines import SphereBaseline
    >>> report = evaluate_split(SphereBaseline(radius=0.3), "coll", split="test")   # doctest: +SKIP
    >>> print(format_table(report))                                                # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import InputError
from ..mesh import Mesh
from .eval_metrics import DIBRProtocol, LISTProtocol, load_ground_truth, score_prediction

PROTOCOLS = ("dibr", "list", "both")


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(images [B,H,W,4] float, linear RGB + alpha) -> list[Mesh]`` (module docstring).

    Example:
        >>> from unrender.geometry.primitives import icosphere
        >>> class Ball:
        ...     def predict(self, images):
        ...         return [icosphere(2, 0.3) for _ in range(images.shape[0])]
        >>> isinstance(Ball(), Predictor)
        True
    """

    def predict(self, images: torch.Tensor) -> list[Mesh]:
        ...


def accepts_categories(predictor) -> bool:
    """True when ``predictor.predict`` takes a ``categories`` keyword (or ``**kwargs``).

    Example:
        >>> class A:
        ...     def predict(self, images, categories=None): ...
        >>> class B:
        ...     def predict(self, images): ...
        >>> accepts_categories(A()), accepts_categories(B())
        (True, False)
    """
    try:
        params = inspect.signature(predictor.predict).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "categories" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def call_predictor(predictor, images: torch.Tensor, categories: list[str]) -> list[Mesh]:
    """``predictor.predict(images[B,H,W,4])`` (with ``categories`` when accepted), checked to be ``B`` meshes.

    Example:
        >>> from unrender.singleview.baselines import SphereBaseline
        >>> len(call_predictor(SphereBaseline(radius=0.3), torch.zeros(2, 32, 32, 4), ["a", "b"]))
        2
    """
    with torch.no_grad():
        out = (predictor.predict(images, categories=categories) if accepts_categories(predictor)
               else predictor.predict(images))
    out = list(out) if isinstance(out, (list, tuple)) else out
    if not isinstance(out, list) or len(out) != images.shape[0] or not all(isinstance(m, Mesh) for m in out):
        raise InputError(f"the predictor's predict() must return a list of {images.shape[0]} Mesh objects (one per "
                         f"image); got {type(out).__name__}"
                         f"{' of ' + str(len(out)) if isinstance(out, list) else ''}.")
    return out


@dataclass
class SampleResult:
    """One scored prediction: object ``(category, model)``, the ``view`` it was predicted from, its metrics.

    Example:
        >>> SampleResult("03001627", "abc", 0, False, {"dibr/chamfer_l1": 0.04}).metrics["dibr/chamfer_l1"]
        0.04
    """

    category: str
    model: str
    view: int
    failed: bool
    metrics: dict[str, float]


@dataclass
class CategoryRow:
    """Mean metrics of one category (or of all: ``category == "overall"``).

    Attributes:
        category: synset id (folder name), or ``"overall"``.
        name: readable name (``metadata.yaml``), or ``"overall"``.
        samples: scored predictions; failures: how many of them were empty/degenerate.
        metrics: metric name -> mean (NaN-ignoring, e.g. IoU without ground-truth volume).

    Example:
        >>> CategoryRow("03001627", "chair", 40, 0, {"dibr/chamfer_l1": 0.04}).name
        'chair'
    """

    category: str
    name: str
    samples: int
    failures: int
    metrics: dict[str, float]


@dataclass
class SingleViewReport:
    """Result of :func:`evaluate_split`.

    Attributes:
        root, split, protocol, views_per_object, view_index: what was evaluated.
        rows: one :class:`CategoryRow` per category, in the collection's order.
        overall: mean of the category rows (samples/failures: totals).
        samples: every :class:`SampleResult`.
        predict_seconds: wall time inside ``predict``; images_per_second: images / predict_seconds.
        score_seconds: wall time spent scoring.
        settings: the protocol settings used (points, thresholds, IoU samples).

    Example:
        >>> row = CategoryRow("overall", "overall", 1, 0, {"list/iou": float("nan")})
        >>> SingleViewReport("coll", "test", "list", 1, 0, [], row).to_dict()["overall"]["metrics"]
        {'list/iou': None}
    """

    root: str
    split: str
    protocol: str
    views_per_object: int
    view_index: int
    rows: list[CategoryRow]
    overall: CategoryRow
    samples: list[SampleResult] = field(default_factory=list)
    predict_seconds: float = 0.0
    images_per_second: float = 0.0
    score_seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (NaN becomes ``None``)."""
        return _no_nan(asdict(self))

    def to_json(self, indent: int = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def _no_nan(x):
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_no_nan(v) for v in x]
    return x


def _mean_row(category: str, name: str, samples: list[SampleResult]) -> CategoryRow:
    keys = list(dict.fromkeys(k for s in samples for k in s.metrics))
    metrics = {}
    for k in keys:
        vals = np.array([s.metrics.get(k, float("nan")) for s in samples], dtype=np.float64)
        metrics[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return CategoryRow(category, name, len(samples), sum(s.failed for s in samples), metrics)


def summarize(samples: list[SampleResult], categories: list[str], names: dict[str, str]) -> tuple[list[CategoryRow],
                                                                                                  CategoryRow]:
    """``(rows, overall)``: per-category means, and the mean of those rows (categories weigh equally).

    Example:
        >>> s = [SampleResult("a", "m1", 0, False, {"x": 1.0}), SampleResult("a", "m2", 0, False, {"x": 3.0}),
        ...      SampleResult("b", "m3", 0, True, {"x": 6.0})]
        >>> rows, overall = summarize(s, ["a", "b"], {"a": "A", "b": "B"})
        >>> [r.metrics["x"] for r in rows], overall.metrics["x"], overall.samples, overall.failures
        ([2.0, 6.0], 4.0, 3, 1)
    """
    rows = [_mean_row(c, names.get(c, c), [s for s in samples if s.category == c]) for c in categories]
    rows = [r for r in rows if r.samples]
    keys = list(dict.fromkeys(k for r in rows for k in r.metrics))
    overall = {}
    for k in keys:
        vals = np.array([r.metrics.get(k, float("nan")) for r in rows], dtype=np.float64)
        overall[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
    return rows, CategoryRow("overall", "overall", sum(r.samples for r in rows), sum(r.failures for r in rows),
                             overall)


def _view_count(model_dir) -> int:
    """Number of views of a DVR object: its ``world_mat_i`` entries in ``cameras.npz`` (0 when unreadable;
    :func:`~unrender.data.collection.read_dvr_object` then names the problem)."""
    try:
        with np.load(model_dir / "cameras.npz") as data:
            return sum(1 for k in data.files if re.fullmatch(r"world_mat_\d+", k))
    except (OSError, ValueError):
        return 0


def _protocols(protocol: str, dibr, lst):
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}.")
    return (dibr or DIBRProtocol()) if protocol in ("dibr", "both") else None, \
        (lst or LISTProtocol()) if protocol in ("list", "both") else None


def evaluate_split(predictor, root, split: str = "test", views_per_object: int = 1, view_index: int = 0,
                   protocol: str = "both", generator: torch.Generator | None = None, *,
                   dibr: DIBRProtocol | None = None, lst: LISTProtocol | None = None, batch_size: int = 16,
                   max_objects: int | None = None, progress=None) -> SingleViewReport:
    """Predict and score every object of ``split`` of the DVR collection ``root`` (module docstring).

    Object ``k`` of the split is predicted from its views ``(view_index + j) mod V``, ``j < views_per_object``
    (image + mask as ``[H,W,4]``); each prediction is scored against the object's ground truth
    (:func:`~unrender.singleview.eval_metrics.load_ground_truth`) with the seed ``s`` drawn from ``generator``
    (default ``torch.Generator().manual_seed(0)``) in object order, so results do not depend on
    ``batch_size``.

    Args:
        predictor: a :class:`Predictor`.
        root: collection folder; split: ``"train"``, ``"val"`` or ``"test"``.
        views_per_object, view_index: which views are predicted (above).
        protocol: ``"dibr"``, ``"list"`` or ``"both"``; dibr, lst: their settings (defaults: the papers').
        batch_size: images per ``predict`` call.
        max_objects: evaluate only the first ``max_objects`` objects of each category (quick looks).
        progress: optional callable ``(done, total)`` after each batch.
    Returns:
        :class:`SingleViewReport`.

    Example:
        >>> report = evaluate_split(predictor, "coll", split="test", protocol="dibr")   # doctest: +SKIP
        >>> report.overall.metrics["dibr/chamfer_l1"]                                   # doctest: +SKIP
        0.0412
    """
    from ..data.collection import read_collection_index, read_dvr_object

    dibr, lst = _protocols(protocol, dibr, lst)
    for name, value in (("views_per_object", views_per_object), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be an integer >= 1; got {value!r}.")
    if max_objects is not None and max_objects < 1:
        raise InputError(f"max_objects must be >= 1 or None; got {max_objects!r}.")
    index = read_collection_index(root)
    objects = index.objects(split)
    if max_objects is not None:
        objects = [o for c in index.categories for o in [p for p in objects if p[0] == c][:max_objects]]
    if not objects:
        raise InputError(f"split {split!r} of {root} lists no objects; pick another split or regenerate the "
                         f"collection with more objects.")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    samples: list[SampleResult] = []
    pending: list[tuple[str, str, int, torch.Tensor, int]] = []  # category, model, view, image [H,W,4], seed
    timing = {"predict": 0.0, "score": 0.0, "images": 0}

    def flush():
        images = torch.stack([p[3] for p in pending])
        t0 = time.perf_counter()
        meshes = call_predictor(predictor, images, [p[0] for p in pending])
        t1 = time.perf_counter()
        truths = {}
        for (cat, model, view, _, seed), mesh in zip(pending, meshes):
            if (cat, model) not in truths:
                truths[(cat, model)] = load_ground_truth(index.model_dir(cat, model))
            s = score_prediction(mesh, truths[(cat, model)], dibr, lst, seed)
            samples.append(SampleResult(cat, model, view, s.failed, s.metrics))
        timing["predict"] += t1 - t0
        timing["score"] += time.perf_counter() - t1
        timing["images"] += len(pending)
        pending.clear()
        if progress is not None:
            progress(len(samples), len(objects) * views_per_object)

    for cat, model in objects:
        n_views = _view_count(index.model_dir(cat, model))
        if n_views == 0:  # unreadable or missing cameras.npz: let the reader raise its DataError naming the file
            n_views = read_dvr_object(index.model_dir(cat, model), load_points=False).images.shape[0]
        if views_per_object > n_views:
            raise InputError(f"views_per_object={views_per_object} but {index.model_dir(cat, model)} has only "
                             f"{n_views} views; lower it.")
        views = [(view_index + j) % n_views for j in range(views_per_object)]
        obj = read_dvr_object(index.model_dir(cat, model), views=views, load_points=False)
        for k, v in enumerate(views):
            rgba = torch.cat([obj.images[k], obj.masks[k, :, :, None]], -1)
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
            pending.append((cat, model, v, rgba, seed))
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()
    rows, overall = summarize(samples, index.categories, index.names)
    settings = {"dibr": asdict(dibr) if dibr else None, "list": asdict(lst) if lst else None,
                "chamfer_l1": "(mean_x d(x,Y) + mean_y d(y,X)) / 2, Euclidean d (DIB-R)",
                "chamfer_l2x1e4": "1e4 (mean_x d(x,Y)^2 + mean_y d(y,X)^2) / 2 (LIST)",
                "overall": "mean of the category rows"}
    return SingleViewReport(str(root), split, protocol, int(views_per_object), int(view_index), rows, overall,
                            samples, timing["predict"], timing["images"] / max(timing["predict"], 1e-9),
                            timing["score"], settings)


# ------------------------------------------------------------------------------------------------ tables

_COLUMNS = {  # metric key prefix -> (header, format)
    "dibr/chamfer_l1": ("CD-L1", "{:.4f}"), "list/chamfer_l2x1e4": ("CD-L2x1e4", "{:.2f}"),
    "list/iou": ("IoU", "{:.3f}"),
}


def _header(key: str) -> str:
    if key in _COLUMNS:
        return _COLUMNS[key][0]
    return key.split("/", 1)[1].replace("f@", "F@")


def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return (_COLUMNS[key][1] if key in _COLUMNS else "{:.3f}").format(value)


def _protocol_keys(report: SingleViewReport, prefix: str) -> list[str]:
    return [k for k in report.overall.metrics if k.startswith(prefix + "/")]


_TITLES = {
    "dibr": "DIB-R protocol ({points:,} points per surface): CD-L1 = (mean d(pred->gt) + mean d(gt->pred)) / 2, "
            "lower is better; F@tau higher is better",
    "list": "LIST protocol ({points:,} points per surface): CD-L2x1e4 = 1e4 (mean d^2(pred->gt) + "
            "mean d^2(gt->pred)) / 2, lower is better; F@tau and IoU higher is better",
}


def format_table(report: SingleViewReport) -> str:
    """Markdown tables (one per protocol): a row per category (``name (synset)``) and an ``overall`` row.

    Example:
        >>> rows = [CategoryRow("03001627", "chair", 2, 0, {"dibr/chamfer_l1": 0.05, "dibr/f@0.01": 0.1})]
        >>> r = SingleViewReport("c", "test", "dibr", 1, 0, rows, rows[0], settings={"dibr": {"points": 2500}})
        >>> print(format_table(r).splitlines()[2])
        | category | n | CD-L1 | F@0.01 |
    """
    blocks = []
    for prefix in ("dibr", "list"):
        keys = _protocol_keys(report, prefix)
        if not keys:
            continue
        points = (report.settings.get(prefix) or {}).get("points", 0)
        lines = [f"{_TITLES[prefix].format(points=points)}.", "", "| category | n | " +
                 " | ".join(_header(k) for k in keys) + " |", "|---|---:|" + "---:|" * len(keys)]
        for row in report.rows + [report.overall]:
            label = row.name if row.category in ("overall", row.name) else f"{row.name} ({row.category})"
            fail = f" ({row.failures} failed)" if row.failures else ""
            lines.append(f"| {label} | {row.samples}{fail} | " +
                         " | ".join(_cell(k, row.metrics.get(k)) for k in keys) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_comparison(reports: dict[str, SingleViewReport]) -> str:
    """One markdown table per protocol comparing several methods: rows ``(category, method)``, categories first.

    Example:
        >>> row = CategoryRow("overall", "overall", 1, 0, {"dibr/chamfer_l1": 0.05})
        >>> r = SingleViewReport("c", "test", "dibr", 1, 0, [], row, settings={"dibr": {"points": 2500}})
        >>> print(format_comparison({"sphere": r}).splitlines()[-1])
        | overall | sphere | 1 | 0.0500 |
    """
    if not reports:
        return ""
    first = next(iter(reports.values()))
    blocks = []
    for prefix in ("dibr", "list"):
        keys = list(dict.fromkeys(k for r in reports.values() for k in _protocol_keys(r, prefix)))
        if not keys:
            continue
        points = (first.settings.get(prefix) or {}).get("points", 0)
        lines = [f"{_TITLES[prefix].format(points=points)}.", "", "| category | method | n | " +
                 " | ".join(_header(k) for k in keys) + " |", "|---|---|---:|" + "---:|" * len(keys)]
        categories = list(dict.fromkeys((row.category, row.name) for r in reports.values() for row in r.rows))
        for cat, name in categories + [("overall", "overall")]:
            for method, r in reports.items():
                row = r.overall if cat == "overall" else next((x for x in r.rows if x.category == cat), None)
                if row is None:
                    continue
                label = name if cat == "overall" else f"{name} ({cat})"
                lines.append(f"| {label} | {method} | {row.samples} | " +
                             " | ".join(_cell(k, row.metrics.get(k)) for k in keys) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
