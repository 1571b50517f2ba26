"""Re-render a NeRF-synthetic dataset made by ``unrender synth`` with Mitsuba 3's path tracer (a third party).

The reconstruction goals are measured on objects rendered by another tool; this makes such data here. It keeps
the dataset's cameras (``transforms_*.json``) and ground truth (``gt/``), and replaces every image with a
Mitsuba render of ``gt/mesh.obj`` (base-colour texture, principled BSDF with the mean roughness and
metallic of the ORM texture, lit by ``gt/probe.hdr``; ``path`` integrator, RGBA, sRGB PNG).

    python benchmarks/mitsuba_dataset.py SRC OUT [--spp 64]

Needs ``mitsuba`` (optional dependency) and a libLLVM >= 17 for its llvm variant (Debian: ``apt-get install
libllvm19``, then ``DRJIT_LIBLLVM_PATH=/usr/lib/x86_64-linux-gnu/libLLVM-19.so``; LLVM 15 aborts in codegen);
without one it falls back to ``scalar_rgb``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unrender.color import linear_to_srgb, unpremultiply  # noqa: E402
from unrender.io.images import read_image, write_png  # noqa: E402

# Mitsuba's sensor looks down its local +z with +x to the left; OpenGL's looks down -z with +x to the right.
_GL_TO_MITSUBA = np.diag([-1.0, 1.0, -1.0, 1.0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--spp", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("DRJIT_LIBLLVM_PATH", "/usr/lib/x86_64-linux-gnu/libLLVM-19.so")
    import mitsuba as mi

    try:
        mi.set_variant("llvm_ad_rgb")
    except Exception:  # noqa: BLE001 - no libLLVM: the scalar variant is slower but renders the same
        mi.set_variant("scalar_rgb")
    src, out = Path(args.src), Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    gt = out / "gt"
    # meshes given to `unrender render` may have no ORM texture: glTF's defaults then (rough 1 would be too
    # matte to test highlights; 0.5 is the middle), no metal
    ks = gt / "texture_ks.png"
    rough, metal = (float(t) for t in read_image(ks)[..., 1:3].mean((0, 1))) if ks.exists() else (0.5, 0.0)
    bsdf = {"type": "principled",
            "base_color": {"type": "bitmap", "filename": str(gt / "texture_kd.png")},
            "roughness": rough, "metallic": metal}
    shape = {"type": "obj", "filename": str(gt / "mesh.obj"), "bsdf": bsdf}
    for split_file in sorted(out.glob("transforms_*.json")):
        meta = json.loads(split_file.read_text())
        for frame in meta["frames"]:
            img_path = out / (frame["file_path"] + ".png")
            h, w = read_image(img_path).shape[:2]
            c2w = np.array(frame["transform_matrix"], dtype=np.float64) @ _GL_TO_MITSUBA
            scene = mi.load_dict({
                "type": "scene", "integrator": {"type": "path", "max_depth": 6, "hide_emitters": True},
                "sensor": {"type": "perspective", "fov": math.degrees(meta["camera_angle_x"]), "fov_axis": "x",
                           "to_world": mi.ScalarTransform4f(c2w.tolist()),
                           "film": {"type": "hdrfilm", "width": w, "height": h, "pixel_format": "rgba"},
                           "sampler": {"type": "independent", "sample_count": args.spp}},
                "env": {"type": "envmap", "filename": str(gt / "probe.hdr")},
                "shape": shape})
            img = torch.from_numpy(np.array(mi.render(scene), dtype=np.float32))
            rgb, a = img[..., :3], img[..., 3:].clamp(0, 1)
            rgb = unpremultiply(rgb, a)  # Mitsuba's RGBA is premultiplied
            write_png(img_path, torch.cat([linear_to_srgb(rgb.clamp(0, 1)), a], -1))
        print(f"rendered {split_file.name}", flush=True)


if __name__ == "__main__":
    main()
