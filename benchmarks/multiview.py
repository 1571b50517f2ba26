"""Multi-view reconstruction: quality against wall time for each preset, with the visual hull as the floor.

For every object (procedural ones made by ``unrender synth``; ``../shared/data/spot`` and ``bob`` rendered
with ``unrender render`` when that folder exists) and every preset, runs ``unrender reconstruct`` in its own
process (so peak memory is that run's), then scores the mesh against the ground truth with
``unrender.metrics.geometry.evaluate_meshes`` (GT bbox longest side = 1) and reads the test-view PSNR (over
white) from ``metrics.json``. The silhouette-only visual hull of the same training masks is scored too: every
run must beat it.

    python benchmarks/multiview.py                           # fast + default on 3 procedural objects (+ spot, bob)
    python benchmarks/multiview.py --presets fast --objects vase --views 32 --resolution 128   # a quick look
    python benchmarks/multiview.py --path-traced --presets default --carving stereo,none   # the issue's setting

``--path-traced`` re-renders every dataset with Mitsuba 3's path tracer (``benchmarks/mitsuba_dataset.py``,
needs ``mitsuba`` and, for speed, ``DRJIT_LIBLLVM_PATH``), as the goals are measured on a third party's renders.
``--carving`` runs each preset once per carving mode (``stereo``, ``photo``, ``none``).

Prints a table and writes benchmarks/results/multiview.json. Datasets and runs go to --work (default
benchmarks/results/multiview_work, reused between invocations: delete it to start over).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unrender.data.layouts import read_dataset  # noqa: E402
from unrender.io.mesh_files import load_mesh  # noqa: E402
from unrender.metrics.geometry import evaluate_meshes  # noqa: E402
from unrender.recon.multiview import preset  # noqa: E402
from unrender.recon.multiview.views import training_views  # noqa: E402
from unrender.recon.visual_hull import visual_hull  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _cli(*args, env=None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unrender.cli", *map(str, args)], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    return time.perf_counter() - t0


def make_datasets(work: Path, objects: list[str], views: int, resolution: int) -> dict[str, tuple[Path, Path]]:
    """``{name: (dataset folder, ground-truth mesh)}``, synthesizing what is missing."""
    out = {}
    for i, name in enumerate(objects):
        d = work / "data" / name
        if not (d / "transforms_train.json").exists():
            _cli("synth", d, "--family", name, "--views", views, "--resolution", resolution, "--seed", 10 + i,
                 "--force")
        out[name] = (d, d / "gt" / "mesh.obj")
    for name in ("spot", "bob"):
        src = SHARED / name
        meshes = sorted(src.glob("*.obj")) if src.exists() else []
        if not meshes:
            continue
        d = work / "data" / name
        if not (d / "transforms_train.json").exists():
            _cli("render", meshes[0], d, "--views", views, "--resolution", resolution, "--force")
        out[name] = (d, meshes[0])
    return out


def path_traced(datasets: dict, work: Path, spp: int) -> dict:
    """The same datasets re-rendered by Mitsuba (same cameras and ground truth), made when missing."""
    out = {}
    for name, (data, gt) in datasets.items():
        d = work / "data_mitsuba" / name
        if not (d / "transforms_train.json").exists():
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mitsuba_dataset.py"), str(data), str(d),
                            "--spp", str(spp)], check=True, cwd=ROOT)
        out[name] = (d, gt)
    return out


def hull_scores(data: Path, gt: Path, resolution: int) -> dict:
    ds = read_dataset(data, "train")
    views = training_views(ds, 0)
    t0 = time.perf_counter()
    hull = visual_hull(views.camera, views.mask, bounds=ds.bounds, resolution=resolution)
    seconds = time.perf_counter() - t0
    m = evaluate_meshes(hull, load_mesh(gt)).to_dict()
    return {"wall_time_s": round(seconds, 1), **{k: m[k] for k in ("chamfer_l1", "normal_consistency", "f_score@0.01")}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="fast,default")
    ap.add_argument("--objects", default="vase,mug,chair", help="procedural families (spot/bob are added when present)")
    ap.add_argument("--views", type=int, default=64, help="training views (test gets views/2)")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--carving", default="stereo", help="comma-separated carving modes to run (stereo, photo, none)")
    ap.add_argument("--path-traced", action="store_true", help="re-render every dataset with Mitsuba 3 first")
    ap.add_argument("--spp", type=int, default=32, help="samples per pixel of --path-traced")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "multiview_work"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "multiview.json"))
    args = ap.parse_args()
    work = Path(args.work)
    datasets = make_datasets(work, args.objects.split(","), args.views, args.resolution)
    if args.path_traced:
        datasets = path_traced(datasets, work, args.spp)
    carvings = args.carving.split(",")
    rows = []
    header = (f"{'object':>8} {'method':>16} {'time s':>8} {'peak MiB':>9} {'CD-L1':>8} {'NC':>6} {'F@0.01':>7} "
              f"{'PSNR':>6}")
    print(header)
    for name, (data, gt) in datasets.items():
        hull = hull_scores(data, gt, preset("default").hull_resolution)
        rows.append({"object": name, "method": "visual hull", **hull})
        print(f"{name:>8} {'visual hull':>16} {hull['wall_time_s']:8.1f} {'':>9} {hull['chamfer_l1']:8.4f} "
              f"{hull['normal_consistency']:6.3f} {hull['f_score@0.01']:7.3f} {'':>6}", flush=True)
        for p, carving in ((p, c) for p in args.presets.split(",") for c in carvings):
            method = p if len(carvings) == 1 else f"{p}/{carving}"
            run = work / ("runs_mitsuba" if args.path_traced else "runs") / f"{name}-{p}-{carving}"
            seconds = _cli("reconstruct", data, "--out", run, "--preset", p, "--device", args.device, "--gt-mesh", gt,
                           "--set", f"carving={carving}", "--force")
            m = json.loads((run / "metrics.json").read_text())
            g = m["geometry"]
            row = {"object": name, "method": method, "carving": carving, "wall_time_s": round(seconds, 1),
                   "train_time_s": m["wall_time_s"],
                   "peak_memory_mib": m["peak_memory_mib"], "psnr": m.get("psnr"), "ssim": m.get("ssim"),
                   "chamfer_l1": g["chamfer_l1"], "normal_consistency": g["normal_consistency"],
                   "f_score@0.01": g["f_score@0.01"], "f_score@0.02": g["f_score@0.02"], "triangles": m["triangles"],
                   "beats_hull": all(g[k] > hull[k] for k in ("normal_consistency", "f_score@0.01"))
                   and g["chamfer_l1"] < hull["chamfer_l1"]}
            rows.append(row)
            print(f"{name:>8} {method:>16} {seconds:8.1f} {row['peak_memory_mib']:9.0f} {row['chamfer_l1']:8.4f} "
                  f"{row['normal_consistency']:6.3f} {row['f_score@0.01']:7.3f} {row['psnr'] or 0:6.2f}"
                  + ("" if row["beats_hull"] else "   (does not beat the hull)"), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"views": args.views, "resolution": args.resolution,
                                          "path_traced": args.path_traced, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
