"""Full differentiable frame: time and peak memory, and the Mitsuba 3 peer in the same run.

A frame = rasterize + interpolate + texture (trilinear base colour and ORM) + GGX PBR under an
environment light (split-sum) + antialias, then backward to vertex positions and both textures.
For 60k triangles at batch 1 the table also gives the frame that rebuilds the prefiltered light and
back-propagates into it (an nvdiffrec optimisation step that learns the light), and the Mitsuba peer.

    python benchmarks/render.py                 # full table (5k / 60k / 500k triangles, 256^2 / 512^2, B = 1 / 8)
    python benchmarks/render.py --quick         # 60k triangles, 512^2, B = 1 only
    python benchmarks/render.py --device cuda   # same code on a GPU

Prints a table and writes benchmarks/results/render.json. Peak memory on CPU is the process's
resident-set high-water mark during the timed frames (reset before them), and "frame" is its growth
over the resident set before the frames (scene, textures and light included in the former, not the
latter); on CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unrender.allocator import retain_freed_memory  # noqa: E402
from unrender.cameras import Camera, look_at  # noqa: E402
from unrender.mesh import Mesh, PBRMaterial  # noqa: E402
from unrender.render.antialias import build_topology  # noqa: E402
from unrender.render.lights.environment import EnvironmentLight  # noqa: E402
from unrender.render.render_mesh import render_mesh  # noqa: E402

TRIANGLES = {"5k": 50, "60k": 173, "500k": 500}  # torus grid n x n quads -> 2 n^2 triangles


def torus(n: int, R=0.7, r=0.3, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torus with an n x n grid of quads (2 n^2 triangles) and a seamless uv grid of (n+1)^2 points."""
    s = torch.linspace(0, 2 * math.pi, n + 1, dtype=torch.float64)
    a, b = torch.meshgrid(s, s, indexing="ij")
    v = torch.stack([(R + r * torch.cos(b)) * torch.cos(a), r * torch.sin(b), (R + r * torch.cos(b)) * torch.sin(a)], -1)
    uv = torch.stack(torch.meshgrid(torch.linspace(0, 1, n + 1, dtype=torch.float64),
                                    torch.linspace(0, 1, n + 1, dtype=torch.float64), indexing="ij"), -1)
    idx = torch.arange((n + 1) * (n + 1)).reshape(n + 1, n + 1)
    q = torch.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], -1).reshape(-1, 4)
    tri = torch.cat([q[:, [0, 2, 1]], q[:, [0, 3, 2]]], 0)
    return v.reshape(-1, 3).to(dtype), tri, uv.reshape(-1, 2).to(dtype)


def make_scene(n: int, device, tex_res=1024, probe_res=256):
    v, f, uv = torus(n)
    g = torch.Generator().manual_seed(0)
    kd = torch.rand(tex_res, tex_res, 3, generator=g)
    orm = torch.rand(tex_res, tex_res, 3, generator=g)
    env = torch.rand(probe_res, 2 * probe_res, 3, generator=g) * 2
    return v.to(device), f.to(device), uv.to(device), kd.to(device), orm.to(device), env.to(device)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Reset the kernel's resident-set high-water mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return rss_bytes()


def unrender_frame(scene, res, batch, device, iters, rebuild_light=False):
    v, f, uv, kd, orm, env = scene
    verts = v.clone().requires_grad_()
    kd_p, orm_p = kd.clone().requires_grad_(), orm.clone().requires_grad_()
    light = EnvironmentLight.from_latlong(env, resolution=env.shape[0] // 2).to(device)
    eyes = torch.tensor([[math.sin(0.7 * i) * 2.5, 1.2, math.cos(0.7 * i) * 2.5] for i in range(batch)])
    cam = Camera.from_fov(45, res, res, look_at(eyes)).to(device)
    topo = build_topology(f)

    if not rebuild_light:
        with torch.no_grad():
            light.build()

    def step():
        mesh = Mesh(verts, f, uvs=uv, uv_faces=f, material=PBRMaterial(base_color=kd_p, orm=orm_p))
        if rebuild_light:  # as in an optimisation step that also learns the light (nvdiffrec)
            light.build()
        out = render_mesh(mesh, cam, light, topology=topo)
        loss = out.color.square().mean() + out.alpha.mean()
        loss.backward()

    step()  # warm-up: kernel compilation, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = rss_bytes()
    reset_peak_rss()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        mem, frame_mem = torch.cuda.max_memory_allocated(), None
    else:
        mem = peak_rss_bytes()
        frame_mem = (mem - base) / 2 ** 20
    times.sort()
    return {"ms": 1e3 * times[len(times) // 2], "ms_min": 1e3 * times[0], "peak_mem_mib": mem / 2 ** 20,
            "frame_peak_mem_mib": frame_mem}


def mitsuba_frame(scene, res, iters):
    """The same mesh, view and resolution through Mitsuba 3 llvm_ad_rgb at 1 spp, forward + backward."""
    try:
        os.environ.setdefault("DRJIT_LIBLLVM_PATH", "/usr/lib/x86_64-linux-gnu/libLLVM-19.so")
        import drjit as dr
        import mitsuba as mi
        mi.set_variant("llvm_ad_rgb")
    except Exception as exc:  # noqa: BLE001
        return {"error": f"mitsuba llvm_ad_rgb unavailable: {exc}"}
    v, f, uv, kd, orm, env = (t.cpu() for t in scene)
    mesh = mi.Mesh("torus", v.shape[0], f.shape[0], has_vertex_texcoords=True)
    params_m = mi.traverse(mesh)
    params_m["vertex_positions"] = mi.Float(v.reshape(-1).numpy())
    params_m["faces"] = mi.UInt32(f.reshape(-1).to(torch.int32).numpy())
    params_m["vertex_texcoords"] = mi.Float(uv.reshape(-1).numpy())
    params_m.update()
    bsdf = mi.load_dict({"type": "principled", "base_color": {"type": "bitmap", "bitmap": mi.Bitmap(kd.numpy())},
                         "roughness": {"type": "bitmap", "bitmap": mi.Bitmap(orm[..., 1:2].contiguous().numpy())},
                         "metallic": {"type": "bitmap", "bitmap": mi.Bitmap(orm[..., 2:3].contiguous().numpy())}})
    mesh.set_bsdf(bsdf)
    scene_m = mi.load_dict({
        "type": "scene", "integrator": {"type": "direct_projective"},
        "sensor": {"type": "perspective", "fov": 45, "to_world": mi.ScalarTransform4f().look_at(
            origin=[0, 1.2, 2.5], target=[0, 0, 0], up=[0, 1, 0]),
            "film": {"type": "hdrfilm", "width": res, "height": res}},
        "env": {"type": "envmap", "bitmap": mi.Bitmap(env.numpy())}, "shape": mesh})
    params = mi.traverse(scene_m)
    key = "shape.vertex_positions"
    dr.enable_grad(params[key])
    params.update()

    def step():
        img = mi.render(scene_m, params, spp=1)
        loss = dr.mean(dr.square(img))
        dr.backward(loss)
        dr.eval(dr.grad(params[key]))

    times = []
    t0 = time.perf_counter()
    step()
    warm = time.perf_counter() - t0
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"ms": 1e3 * times[len(times) // 2], "ms_min": 1e3 * times[0], "first_call_ms": 1e3 * warm,
            "integrator": "direct_projective, 1 spp"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="only 60k triangles, 512^2, batch 1")
    ap.add_argument("--sizes", default=None, help="comma-separated subset of 5k,60k,500k")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--resolutions", default=None, help="comma-separated resolutions (default 256,512)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--no-mitsuba", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "render.json"))
    ap.add_argument("--system-allocator", action="store_true",
                    help="leave glibc's allocator as is (default: retain freed memory as the CLI does)")
    args = ap.parse_args()
    retained = False if args.system_allocator else retain_freed_memory()
    print(f"allocator: {'glibc, freed memory retained (as the CLI runs)' if retained else 'system default'}")
    device = torch.device(args.device)
    sizes = ["60k"] if args.quick else (args.sizes.split(",") if args.sizes else list(TRIANGLES))
    batches = [1] if args.quick else [int(b) for b in (args.batches or "1,8").split(",")]
    resolutions = [512] if args.quick else [int(r) for r in (args.resolutions or "256,512").split(",")]
    rows = []
    for name in sizes:
        scene = make_scene(TRIANGLES[name], device)
        for res in resolutions:
            for batch in batches:
                r = unrender_frame(scene, res, batch, device, args.iters if batch == 1 else max(2, args.iters // 2))
                row = {"triangles": 2 * TRIANGLES[name] ** 2, "resolution": res, "batch": batch, **r}
                if batch == 1 and name == "60k":
                    row["with_light_rebuild"] = unrender_frame(scene, res, batch, device, args.iters, rebuild_light=True)
                if batch == 1 and name == "60k" and not args.no_mitsuba and device.type == "cpu":
                    row["mitsuba"] = mitsuba_frame(scene, res, max(2, args.iters // 2))
                    if "ms" in row["mitsuba"]:
                        row["speedup_vs_mitsuba"] = row["mitsuba"]["ms"] / row["ms"]
                rows.append(row)
                mi_ms = row.get("mitsuba", {}).get("ms")
                print(f"{row['triangles']:>8} tris {res:>4}^2 B={batch}: {row['ms']:8.1f} ms/frame "
                      f"(min {row['ms_min']:.1f}), peak {row['peak_mem_mib']:6.0f} MiB"
                      + (f" (frame {row['frame_peak_mem_mib']:5.0f} MiB)" if row.get("frame_peak_mem_mib") is not None else "")
                      + (f", +light rebuild {row['with_light_rebuild']['ms']:.1f} ms" if "with_light_rebuild" in row else "")
                      + (f", mitsuba {mi_ms:8.1f} ms (x{row['speedup_vs_mitsuba']:.0f})" if mi_ms else ""), flush=True)
    result = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "rows": rows, "retain_freed_memory": retained,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
