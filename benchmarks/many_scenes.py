"""Many scenes at once: shared tri-plane bases (Fused-Planes) vs independent tri-planes.

    PYTHONPATH=. python benchmarks/many_scenes.py --scenes 10 50 200 --fit-scenes 20 --json many_scenes.json

For each representation (``shared``, ``independent``), stage 1 (``many fit``) runs once on ``--fit-scenes``
scenes of their own (seed 1000): it learns the shared decoder, and for ``shared`` the bases. Stage 2
(``many add``) then learns N new scenes (seed 0) with everything shared frozen; this is the per-scene cost the
goal is about. Each stage runs in a fresh process (``--child``), so that its peak RSS is its own.

Columns: per-scene training time (stage 2, excluding test renders), the scene's own parameter bytes, the
peak RSS of the stage-2 process, test PSNR / SSIM (over white), and the wall time of all N scenes; with
``--processes 1 2`` the same stage 2 also runs under torchrun with 2 processes of one thread each. Ratios are
independent / shared from the same run on the same machine.

``--budgets 50 100 200 400 800`` measures time to quality instead of time at one schedule: stage 2 runs once per
budget of ``add.iterations`` (one process), and the summary compares the time independent tri-planes take to
reach their plateau (the smallest budget within 0.1 dB of their best PSNR) with the time shared bases take to
come within 0.5 dB of that plateau (the goal's tolerance), when they do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(argv: list[str]) -> None:
    """Run one stage in this process and write its wall time and peak RSS (``--child STAGE DATA RUN OUT ...``)."""
    from unrender.recon.many_scenes import RunStore, add_scenes, apply_overrides, fit_scenes, preset

    stage, data, run, out, rep, preset_name, *sets = argv
    t0 = time.perf_counter()
    if stage == "fit":
        fit_scenes(data, run, apply_overrides(preset(preset_name, rep), sets), force=True, progress=False)
    else:
        cfg = apply_overrides(RunStore(run).read_config(), sets)
        add_scenes(data, run, overrides=cfg, progress=False)
    rank = os.environ.get("RANK", "0")
    result = {"wall_s": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
              / 1024}
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(result))


def run_child(stage: str, data: Path, run: Path, rep: str, preset_name: str, sets: list[str], processes: int = 1,
              threads: int = 1) -> dict:
    out = run.parent / f"{run.name}_{stage}_{processes}p"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    sets = sets + [f"threads={threads}", "device=cpu"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone"]
                if processes > 1 else [sys.executable])
    t0 = time.perf_counter()
    subprocess.run(launcher + [__file__, "--child", stage, str(data), str(run), str(out), rep, preset_name] + sets,
                   env=env, check=True)
    wall = time.perf_counter() - t0
    ranks = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(processes)]
    return {"wall_s": wall, "stage_wall_s": max(r["wall_s"] for r in ranks),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks)}


def scene_subset(source: Path, n: int, folder: Path) -> Path:
    """A scenes root holding (links to) the first ``n`` scenes of ``source``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(p.name for p in source.iterdir() if p.is_dir())[:n]:
        link = folder / name
        if not link.exists():
            link.symlink_to(source / name)
    return folder


def stage2_metrics(run: Path, names: set[str]) -> dict:
    summary = json.loads((run / "summary.json").read_text())["per_scene"]
    rows = [m for k, m in summary.items() if k in names]
    mean = lambda key: sum(m[key] for m in rows) / len(rows)  # noqa: E731
    return {"scenes": len(rows), "train_s_per_scene": mean("train_seconds"), "psnr": mean("psnr"),
            "ssim": mean("ssim"), "parameter_bytes": mean("parameter_bytes")}


def time_to_quality(results: list[dict], n: int, rep: str, plateau_db: float = 0.1, tolerance_db: float = 0.5):
    """One summary line from the ``--budgets`` rows of ``rep`` and ``independent`` at ``n`` scenes (or None).

    Independent tri-planes' plateau is the smallest budget within ``plateau_db`` of their best PSNR; ``rep``
    reaches quality at its smallest budget within ``tolerance_db`` of that plateau's PSNR.
    """
    rows = {r2: sorted((r for r in results if r["representation"] == r2 and r["scenes"] == n and r["iterations"]),
                       key=lambda r: r["iterations"]) for r2 in ("independent", rep)}
    if not rows["independent"] or not rows[rep]:
        return None
    best = max(r["psnr"] for r in rows["independent"])
    plateau = next(r for r in rows["independent"] if r["psnr"] >= best - plateau_db)
    reached = next((r for r in rows[rep] if r["psnr"] >= plateau["psnr"] - tolerance_db), None)
    verb = "is best at its largest budget," if plateau is rows["independent"][-1] else "plateaus at"
    head = (f"N={n} time to quality: independent {verb} {plateau['iterations']} iterations "
            f"({plateau['psnr']:.2f} dB, {plateau['train_s_per_scene']:.2f} s/scene); ")
    if reached is None:
        top = max(rows[rep], key=lambda r: r["psnr"])
        return head + (f"{rep} never comes within {tolerance_db} dB (best {top['psnr']:.2f} dB at "
                       f"{top['iterations']} iterations)")
    return head + (f"{rep} is within {tolerance_db} dB at {reached['iterations']} iterations ({reached['psnr']:.2f} "
                   f"dB, {reached['train_s_per_scene']:.2f} s/scene): time ratio "
                   f"{plateau['train_s_per_scene'] / reached['train_s_per_scene']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--fit-scenes", type=int, default=20, help="stage-1 scenes (their own set)")
    ap.add_argument("--representations", nargs="+", default=["shared", "independent"])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--views", type=int, default=50)
    ap.add_argument("--test-views", type=int, default=10)
    ap.add_argument("--processes", type=int, nargs="*", default=[1], help="stage-2 process counts to time")
    ap.add_argument("--budgets", type=int, nargs="+", default=[],
                    help="stage-2 iteration budgets for a time-to-quality comparison (one process)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--work", type=Path, default=Path("/tmp/unrender_many_bench"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from unrender.data.scene_collection import synthesize_scenes

    def data(name: str, n: int, seed: int) -> Path:
        root = args.work / f"{name}_{args.resolution}px_{args.views}v"
        meta = root / "collection.json"
        if not meta.is_file() or json.loads(meta.read_text())["scenes"].__len__() < n:
            synthesize_scenes(root, scenes=n, views=args.views, test_views=args.test_views,
                              resolution=args.resolution, seed=seed, force=True)
        return root

    fit_data = scene_subset(data("fit", args.fit_scenes, 1000), args.fit_scenes, args.work / "fit_subset")
    new_data = data("new", max(args.scenes), 0)
    results = []
    for rep in args.representations:
        run = args.work / f"run_{rep}"
        fit = run_child("fit", fit_data, run, rep, args.preset, list(args.sets), threads=args.threads)
        print(f"{rep}: stage 1 on {args.fit_scenes} scenes {fit['stage_wall_s']:.1f} s, peak RSS "
              f"{fit['peak_rss_mb']:.0f} MB", flush=True)
        for n in args.scenes:
            subset = scene_subset(new_data, n, args.work / f"new_{n}")
            names = {p.name for p in subset.iterdir()}
            variants = [(procs, None) for procs in args.processes] + [(1, b) for b in args.budgets]
            for procs, budget in variants:
                stage2 = args.work / (f"run_{rep}_{n}_{procs}p" + (f"_{budget}it" if budget else ""))
                subprocess.run(["rm", "-rf", str(stage2)], check=True)
                subprocess.run(["cp", "-r", str(run), str(stage2)], check=True)   # the stage-1 run, untouched
                timing = run_child("add", subset, stage2, rep, args.preset,
                                   [f"add.iterations={budget}"] if budget else [], processes=procs,
                                   threads=args.threads)
                row = {"representation": rep, "scenes": n, "processes": procs, "iterations": budget,
                       **stage2_metrics(stage2, names), "wall_s_all": timing["stage_wall_s"],
                       "peak_rss_mb": timing["peak_rss_mb"], "stage1_s": fit["stage_wall_s"]}
                results.append(row)
                print(f"{rep:12s} N={n:4d} procs={procs} iterations={budget or 'preset'}: "
                      f"{row['train_s_per_scene']:.2f} s/scene, "
                      f"{row['parameter_bytes'] / 1024:.1f} KiB/scene, peak RSS {row['peak_rss_mb']:.0f} MB, "
                      f"PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f}, all {row['wall_s_all']:.1f} s", flush=True)
    print("\n| representation | N | procs | iterations | s/scene | KiB/scene | peak RSS MB | PSNR | SSIM | "
          "wall all (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['representation']} | {r['scenes']} | {r['processes']} | {r['iterations'] or 'preset'} | "
              f"{r['train_s_per_scene']:.2f} | "
              f"{r['parameter_bytes'] / 1024:.1f} | {r['peak_rss_mb']:.0f} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
              f"{r['wall_s_all']:.1f} |")
    by = {(r["representation"], r["scenes"], r["processes"]): r for r in results if not r["iterations"]}
    for n in args.scenes:
        i = by.get(("independent", n, 1))
        for rep in ("shared", "latent"):
            s = by.get((rep, n, 1))
            if s and i:
                print(f"N={n} {rep}: time ratio independent/{rep} "
                      f"{i['train_s_per_scene'] / s['train_s_per_scene']:.2f}x, parameter ratio "
                      f"{i['parameter_bytes'] / s['parameter_bytes']:.2f}x, peak RSS ratio "
                      f"{i['peak_rss_mb'] / s['peak_rss_mb']:.2f}x, PSNR {rep} - independent "
                      f"{s['psnr'] - i['psnr']:+.2f} dB")
        for rep in args.representations:
            one, two = by.get((rep, n, 1)), by.get((rep, n, 2))
            if one and two:
                print(f"N={n} {rep}: 2 processes take {two['wall_s_all'] / one['wall_s_all']:.2f}x the time of one")
    quality = [time_to_quality(results, n, rep) for n in args.scenes for rep in ("shared", "latent")]
    for line in filter(None, quality):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
