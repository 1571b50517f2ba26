"""Pose error of Structure from Duplicates on synthetic scenes (``unrender.data.duplicates``).

    PYTHONPATH=. python benchmarks/duplicates_poses.py --copies 4 8 --seeds 0 1 2 3 --yaw-range 90 360 \
        --models upright free

Prints one line per scene and pose model (``upright``: copies on one plane,
:mod:`unrender.recon.duplicates.upright`; ``free``: structure from motion; feature matches only, no
render-and-compare registration): family, copies posed, mean/median rotation error in degrees after
aligning the object frame, translation error after a similarity alignment relative to the spread of the
virtual cameras, wall time; then the mean over scenes per (model, copies, yaw range).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from unrender.data.duplicates import gt_object_to_camera, synthesize_duplicates
from unrender.errors import UnrenderError
from unrender.recon.duplicates import pose_errors, read_duplicates_input
from unrender.recon.duplicates.pipeline import DuplicatesConfig, initial_poses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--yaw-range", type=float, nargs="+", default=[90.0, 360.0])
    ap.add_argument("--resolution", type=int, default=768)
    ap.add_argument("--family", default="auto", help="procedural object family; auto = chosen by the seed")
    ap.add_argument("--models", nargs="+", default=["upright", "free"], choices=["upright", "free"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        for n, yr, model in [(n, yr, m) for n in args.copies for yr in args.yaw_range for m in args.models]:
            if True:
                rows = []
                for seed in args.seeds:
                    out = Path(tmp) / f"s{n}_{yr}_{seed}"
                    if not out.exists():
                        synthesize_duplicates(out, copies=n, resolution=args.resolution, seed=seed, yaw_range_deg=yr,
                                              family=args.family)
                    family = __import__("json").loads((out / "gt" / "scene.json").read_text())["family"]
                    data = read_duplicates_input(out / "image.png", out / "instances.png", fov=40)
                    t0 = time.time()
                    try:
                        o2c, posed, *_ = initial_poses(data, DuplicatesConfig(pose_model=model), log=lambda m: None)
                    except UnrenderError as exc:
                        print(f"{model} N={n} yaw<{yr:g} seed={seed} {family}: failed ({exc})")
                        rows.append((0, np.nan, np.nan, np.nan))
                        continue
                    wall = time.time() - t0
                    if posed.sum() < 2:
                        rows.append((posed.sum(), np.nan, np.nan, np.nan))
                        continue
                    e = pose_errors(o2c, gt_object_to_camera(out), posed)
                    rows.append((posed.sum(), e.mean_rotation_deg, e.mean_translation_rel, wall))
                    print(f"{model} N={n} yaw<{yr:g} seed={seed} {family:5s}: posed {posed.sum()}/{n}, rotation mean "
                          f"{e.mean_rotation_deg:.2f} median {e.median_rotation_deg:.2f} deg, translation "
                          f"{e.mean_translation_rel:.3f} (rel), {wall:.1f} s", flush=True)
                a = np.array(rows, dtype=float)
                print(f"== {model} N={n} yaw<{yr:g}: posed {a[:, 0].sum():.0f}/{n * len(rows)}, mean rotation "
                      f"{np.nanmean(a[:, 1]):.2f} deg, median over scenes {np.nanmedian(a[:, 1]):.2f} deg, translation "
                      f"{np.nanmean(a[:, 2]):.3f} (rel)", flush=True)


if __name__ == "__main__":
    main()
