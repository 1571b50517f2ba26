"""Structure from Duplicates end to end on synthetic scenes, against the multi-view pipeline on true views.

    PYTHONPATH=. python benchmarks/duplicates.py --copies 4 8 16 --seeds 0 1 --preset fast \\
        --out benchmarks/results/duplicates.json

For every (copies N, seed): ``unrender synth --kind duplicates`` writes one photo of N copies with ground truth;
``reconstruct_duplicates`` runs on it (with and without render-and-compare registration, ``--register on off``)
and is scored with ``--gt``: copies posed, mean rotation error after the similarity alignment, F-score@0.02 and
normal consistency of the shape, re-render PSNR inside all instance masks and inside the posed copies' masks,
albedo PSNR, wall time. The
reference: the same object rendered from N true, known views (``render_mesh_dataset``) and reconstructed by
the multi-view pipeline with the same preset. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from unrender.config_overrides import apply_overrides
from unrender.data.duplicates import synthesize_duplicates
from unrender.data.synth import render_mesh_dataset
from unrender.errors import UnrenderError
from unrender.io.mesh_files import load_mesh
from unrender.metrics.geometry import evaluate_meshes
from unrender.recon.duplicates import read_duplicates_input
from unrender.recon.duplicates.pipeline import DuplicatesConfig, reconstruct_duplicates, recon_preset
from unrender.recon.multiview import preset, reconstruct


def run_duplicates(scene: Path, out: Path, args, register: bool) -> dict:
    data = read_duplicates_input(scene / "image.png", scene / "instances.png", fov=40)
    cfg = apply_overrides(DuplicatesConfig(recon=recon_preset(args.preset), register_unposed=register), args.set)
    out.mkdir(parents=True)
    t0 = time.time()
    try:
        m = reconstruct_duplicates(data, out, cfg, gt=scene, progress=False, log=lambda s: None)
    except UnrenderError as exc:
        return {"failed": str(exc)}
    return {"copies_posed": m["copies_posed"], "posed_by_features": int(sum(json.loads(
                (out / "poses.json").read_text())["solver"]["posed_by_features"])),
            "rotation_deg": m.get("poses", {}).get("mean_rotation_deg", float("nan")),
            "f_score@0.02": m.get("shape", {}).get("f_score@0.02", float("nan")),
            "normal_consistency": m.get("shape", {}).get("normal_consistency", float("nan")),
            "rerender_psnr": m["rerender_psnr_in_masks"],
            "rerender_psnr_posed": m.get("rerender_psnr_in_posed_masks", float("nan")), "albedo_psnr": m.get("albedo_psnr", float("nan")),
            "wall_s": round(time.time() - t0, 1)}


def run_multiview(scene: Path, tmp: Path, n: int, args) -> dict:
    # N training views: as many views as the photo offers copies
    data = render_mesh_dataset(scene / "gt" / "mesh.obj", tmp / "mv_data", views=n, resolution=256,
                               env_path=scene / "gt" / "probe.hdr")
    t0 = time.time()
    out = reconstruct(data, tmp / "mv_run", apply_overrides(preset(args.preset), []), progress=False)
    mesh = load_mesh(out / "mesh" / "mesh.obj")
    g = evaluate_meshes(mesh, load_mesh(scene / "gt" / "mesh.obj"))
    return {"f_score@0.02": g.to_dict()["f_score@0.02"],
            "normal_consistency": g.normal_consistency, "wall_s": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--resolution", type=int, default=768)
    ap.add_argument("--family", default="auto")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--register", nargs="+", default=["on", "off"], choices=["on", "off"])
    ap.add_argument("--set", action="append", default=[], help="override a DuplicatesConfig field, KEY=VALUE")
    ap.add_argument("--no-multiview", action="store_true", help="skip the multi-view reference")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/duplicates.json"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    rows = []

    def save():  # after every row, so that an interrupted run keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"args": meta, "rows": rows}, indent=2) + "\n")

    cols = ("copies_posed", "posed_by_features", "rotation_deg", "f_score@0.02", "normal_consistency",
            "rerender_psnr", "rerender_psnr_posed", "albedo_psnr", "wall_s")
    print("method        N seed family | " + " | ".join(cols), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.copies:
            for seed in args.seeds:
                base = Path(tmp) / f"n{n}_s{seed}"
                scene = synthesize_duplicates(base / "scene", copies=n, resolution=args.resolution, seed=seed,
                                              family=args.family)
                family = json.loads((scene / "gt" / "scene.json").read_text())["family"]
                for reg in args.register:
                    r = run_duplicates(scene, base / f"dup_{reg}", args, reg == "on")
                    rows.append({"method": f"duplicates/reg-{reg}", "copies": n, "seed": seed, "family": family, **r})
                    save()
                    print(f"dup reg-{reg:3s} {n:3d} {seed:4d} {family:6s} | "
                          + " | ".join(f"{r.get(c, float('nan')):.3g}" for c in cols) if "failed" not in r
                          else f"dup reg-{reg} {n} {seed} {family}: failed: {r['failed']}", flush=True)
                if not args.no_multiview:
                    r = run_multiview(scene, base, n, args)
                    rows.append({"method": "multiview", "copies": n, "seed": seed, "family": family, **r})
                    save()
                    print(f"multiview   {n:3d} {seed:4d} {family:6s} | F@0.02 {r['f_score@0.02']:.3f} NC "
                          f"{r['normal_consistency']:.3f} {r['wall_s']:.0f} s", flush=True)
    print("\nmeans per method and N:")
    for method in sorted({r["method"] for r in rows}):
        for n in args.copies:
            sel = [r for r in rows if r["method"] == method and r["copies"] == n and "failed" not in r]
            if sel:
                means = {c: float(np.nanmean([r.get(c, np.nan) for r in sel])) for c in cols if c in sel[0]}
                print(f"{method:20s} N={n:3d}: " + ", ".join(f"{c} {v:.3g}" for c, v in means.items()))
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
