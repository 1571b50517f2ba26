"""Single-view reconstruction: both models (dibr, implicit) against three baselines on a procedural collection.

Synthesizes (or reuses) a collection with ``unrender.data.collection.synthesize_collection``, trains each model
with ``unrender.singleview.training`` under a wall-time budget (skipped with a message while that module is
missing), fits the baselines (a sphere, the category's mean shape, nearest-neighbour retrieval by image
features) on the train split, and scores everything on the test split with
``unrender.singleview.evaluate.evaluate_split`` under DIB-R's and LIST's protocols. Every training and every
evaluation runs in its own process, so its peak memory (``ru_maxrss`` from ``os.wait4``) is its own.

    python benchmarks/singleview.py                  # 3 categories x 200 training objects, 64^2, <= 30 min per model
    python benchmarks/singleview.py --quick          # 3 x 12 objects, 8 views, 2 min per model: a smoke run
    python benchmarks/singleview.py --models --baselines sphere mean nn    # baselines only

Prints the per-category table of every method, a summary (train time, train images/s, predict images/s, peak
memory, overall Chamfer-L1) and whether each model beats all baselines in Chamfer-L1 (the issue's goal), and
writes benchmarks/results/singleview.json. Data and runs go to --work (default
benchmarks/results/singleview_work), reused between invocations (--retrain trains again).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("dibr", "implicit")
BASELINES = ("sphere", "mean", "nn")


# ------------------------------------------------------------------------------------------- child stages


def stage_train(args) -> dict:
    """Train one model with ``unrender.singleview.training.train_singleview`` (its default preset, the time
    budget and seed given); a missing training module is reported as skipped."""
    try:
        training = importlib.import_module("unrender.singleview.training")
    except ImportError as exc:
        return {"skipped": f"unrender.singleview.training is not available ({exc})"}
    from unrender.singleview.train_config import apply_overrides, preset

    cfg = apply_overrides(preset("default", args.model), list(args.sets))
    t0 = time.perf_counter()
    result = training.train_singleview(Path(args.data), Path(args.run), cfg, max_minutes=args.minutes,
                                       seed=args.seed, force=True)
    elapsed = float(getattr(result, "elapsed", 0.0)) or time.perf_counter() - t0
    images = getattr(result, "images_seen", None)
    return {"train_seconds": elapsed, "images_seen": images, "epochs": getattr(result, "epochs_completed", None),
            "stopped": getattr(result, "stopped", None),
            "train_images_per_second": images / elapsed if images else None}


def stage_eval(args) -> dict:
    import torch

    from unrender.singleview.evaluate import evaluate_split

    t0 = time.perf_counter()
    if args.baseline:
        from unrender.cli_singleview_eval import build_baseline
        predictor = build_baseline(args.baseline, Path(args.data))
    else:
        try:
            from unrender.singleview.predict import load_predictor
        except ImportError as exc:
            return {"skipped": f"unrender.singleview.predict is not available ({exc})"}
        predictor = load_predictor(Path(args.run))
    fit_seconds = time.perf_counter() - t0
    report = evaluate_split(predictor, Path(args.data), split="test", views_per_object=args.views_per_object,
                            protocol=args.protocol, generator=torch.Generator().manual_seed(args.seed),
                            max_objects=args.max_test_objects)
    return {"fit_seconds": fit_seconds, "report": report.to_dict()}


# ------------------------------------------------------------------------------------------ orchestration


def run_stage(argv: list[str], result: Path, timeout_s: float) -> dict:
    """Run this script as ``--stage ...`` in a fresh process; its JSON result plus wall time and peak memory."""
    result.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv, "--result", str(result)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = json.loads(result.read_text()) if result.is_file() else {}
    if proc.returncode != 0 and "skipped" not in out:
        killed = " (killed at the time limit)" if proc.returncode == -9 else ""
        out["error"] = f"exit status {proc.returncode}{killed}"
    out.update(wall_seconds=time.perf_counter() - t0, peak_memory_mb=usage.ru_maxrss / 1024)
    return out


def make_collection(args) -> Path:
    from unrender.data.collection import synthesize_collection

    data = args.work / "data"
    meta_path = data / "collection.json"
    want = {"seed": args.seed, "objects_per_category": args.objects, "views": args.views,
            "resolution": args.resolution}
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()) and len(meta.get("categories", {})) == args.categories:
            print(f"reusing {data}")
            return data
    print(f"synthesizing {args.categories} x {args.objects} objects, {args.views} views at {args.resolution}^2 "
          f"into {data}")
    t0 = time.perf_counter()

    def progress(done, total, name):
        if done % 20 == 0 or done == total:
            print(f"  {done}/{total} objects, {time.perf_counter() - t0:.0f} s", flush=True)

    synthesize_collection(data, categories=args.categories, objects=args.objects, views=args.views,
                          resolution=args.resolution, seed=args.seed, force=True, progress=progress)
    return data


def summary_table(results: dict) -> str:
    lines = ["| method | train s | train img/s | fit s | predict img/s | peak MB (train / eval) | CD-L1 overall |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        train, ev = r.get("train", {}), r.get("eval", {})
        cd = ((ev.get("report") or {}).get("overall") or {}).get("metrics", {}).get("dibr/chamfer_l1")

        def fmt(x, f="{:.0f}"):
            return "-" if x is None else f.format(x)

        mem = f"{fmt(train.get('peak_memory_mb'))} / {fmt(ev.get('peak_memory_mb'))}"
        ips = ((ev.get("report") or {}).get("images_per_second"))
        train_ips = fmt(train.get("train_images_per_second"), "{:.1f}")
        lines.append(f"| {name} | {fmt(train.get('train_seconds'))} | {train_ips} | "
                     f"{fmt(ev.get('fit_seconds'), '{:.1f}')} | {fmt(ips, '{:.1f}')} | {mem} | {fmt(cd, '{:.4f}')} |")
    return "\n".join(lines)


GOAL_METRICS = (("dibr/chamfer_l1", "Chamfer-L1", False), ("dibr/f@0.02", "F@0.02", True))


def goal_lines(results: dict, models: list[str], baselines: list[str]) -> list[str]:
    """The issue's goal, per model: better than every baseline in Chamfer-L1 and F-score@0.02, overall and in
    every category."""
    def rows(name):
        rep = (results.get(name, {}).get("eval") or {}).get("report")
        return None if not rep else {"overall": rep["overall"], **{r["category"]: r for r in rep["rows"]}}

    out = []
    for m in models:
        mine, base = rows(m), {b: rows(b) for b in baselines}
        if mine is None or any(v is None for v in base.values()):
            out.append(f"{m}: not evaluated (see the errors above)")
            continue
        for key, label, higher in GOAL_METRICS:
            for cat, row in mine.items():
                value = row["metrics"].get(key)
                others = {b: r[cat]["metrics"].get(key) for b, r in base.items() if cat in r}
                if value is None or not others or any(v is None for v in others.values()):
                    continue
                best = (max if higher else min)(others, key=others.get)
                wins = value > others[best] if higher else value < others[best]
                verdict = "beats" if wins else "does NOT beat"
                out.append(f"{m} [{cat}]: {label} {value:.4f} {verdict} every baseline "
                           f"(best: {best} {others[best]:.4f})")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=RESULTS / "singleview_work")
    p.add_argument("--categories", type=int, default=3)
    # The goal is stated for 200 *training* objects per category: 286 split 70/10/20 give 200 / 29 / 57.
    p.add_argument("--objects", type=int, default=286, help="objects per category (70/10/20 %% train/val/test)")
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per model")
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=BASELINES)
    p.add_argument("--protocol", default="both", choices=("dibr", "list", "both"))
    p.add_argument("--views-per-object", type=int, default=1)
    p.add_argument("--max-test-objects", type=int, default=None, help="per category")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true", help="train again even if a finished run exists")
    p.add_argument("--quick", action="store_true", help="3 x 12 objects, 8 views, 2 minutes per model")
    p.add_argument("--out", type=Path, default=RESULTS / "singleview.json")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the models' default preset (e.g. lr_schedule=cosine)")
    p.add_argument("--tag", default="", help="suffix of the run folders (runs/<model>_<tag>), to keep variants apart")
    # Internal: one stage in a child process.
    p.add_argument("--stage", choices=("train", "eval"), help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--baseline", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.stage:
        out = stage_train(args) if args.stage == "train" else stage_eval(args)
        args.result.write_text(json.dumps(out, indent=2))
        if "skipped" in out:
            print(f"skipped: {out['skipped']}")
        return
    if args.quick:
        args.objects, args.views, args.minutes = 12, 8, 2.0
    args.work.mkdir(parents=True, exist_ok=True)
    data = make_collection(args)
    common = ["--data", str(data), "--protocol", args.protocol, "--views-per-object", str(args.views_per_object),
              "--seed", str(args.seed)] + (["--max-test-objects", str(args.max_test_objects)]
                                           if args.max_test_objects else [])
    results: dict[str, dict] = {}
    eval_timeout = 4 * 3600
    for model in args.models:
        run = args.work / "runs" / (f"{model}_{args.tag}" if args.tag else model)
        done = run / "benchmark_train.json"
        if done.is_file() and not args.retrain:
            print(f"{model}: reusing the finished run in {run}")
            train = json.loads(done.read_text())
        else:
            print(f"{model}: training for up to {args.minutes:g} minutes into {run}", flush=True)
            run.parent.mkdir(parents=True, exist_ok=True)
            train = run_stage(["--stage", "train", "--model", model, "--run", str(run), "--data", str(data),
                               "--minutes", str(args.minutes), "--seed", str(args.seed)]
                              + [f"--set={item}" for item in args.sets],
                              args.work / f"{run.name}_train.json", timeout_s=args.minutes * 60 * 1.25 + 600)
            if "skipped" not in train and "error" not in train:
                done.write_text(json.dumps(train, indent=2))
        results[model] = {"train": train}
        if "skipped" in train or "error" in train:
            print(f"{model}: {train.get('skipped') or train.get('error')}; not evaluated")
            continue
        print(f"{model}: evaluating", flush=True)
        results[model]["eval"] = run_stage(["--stage", "eval", "--run", str(run)] + common,
                                           args.work / f"{run.name}_eval.json", eval_timeout)
    for kind in args.baselines:
        print(f"baseline {kind}: fitting and evaluating", flush=True)
        results[kind] = {"eval": run_stage(["--stage", "eval", "--baseline", kind] + common,
                                           args.work / f"{kind}_eval.json", eval_timeout)}

    from unrender.singleview.evaluate import SingleViewReport, format_comparison

    reports = {}
    for name, r in results.items():
        rep = (r.get("eval") or {}).get("report")
        if rep:
            reports[name] = _report_from_dict(SingleViewReport, rep)
        elif r.get("eval"):
            print(f"{name}: evaluation failed: {r['eval'].get('skipped') or r['eval'].get('error')}")
    print()
    print(format_comparison(reports))
    print()
    print(summary_table(results))
    print()
    goals = goal_lines(results, [m for m in args.models if m in reports], args.baselines)
    for line in goals:
        print(line)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("stage", "model", "baseline", "data", "run", "result")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "results": results, "goal": goals}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def _report_from_dict(cls, d: dict):
    """Rebuild a :class:`SingleViewReport` (rows and overall only) from its ``to_dict`` form for the tables."""
    from unrender.singleview.evaluate import CategoryRow

    def row(x):
        return CategoryRow(x["category"], x["name"], x["samples"], x["failures"],
                           {k: (float("nan") if v is None else v) for k, v in x["metrics"].items()})

    return cls(d["root"], d["split"], d["protocol"], d["views_per_object"], d["view_index"],
               [row(x) for x in d["rows"]], row(d["overall"]), settings=d.get("settings") or {})


if __name__ == "__main__":
    main()
