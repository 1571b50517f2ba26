"""``unrender <command>``: a thin command line over the library.

Each command parses its options, then calls one function of the library; no logic lives here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import UnrenderError
from .geometry.procedural_objects import FAMILIES

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="unrender: images back into 3D (shape, materials, lighting) on CPU and GPU.")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.command()
def demo(out: Path = typer.Option(Path("unrender-demo"), help="Folder for the demo's outputs."),
         resolution: int = typer.Option(128, help="Image size in pixels."),
         views: int = typer.Option(32, help="Training views of the synthetic object."),
         set_: list[str] = typer.Option([], "--set", help="Override a field of the fast preset, KEY=VALUE."),
         force: bool = typer.Option(False, help="Overwrite a previous demo in OUT.")):
    """Synthesize the built-in object and reconstruct it (preset fast, ~2 minutes on 2 CPU cores)."""
    from .demo import run_demo
    try:
        report = run_demo(out, resolution=resolution, views=views, force=force, overrides=set_)
    except UnrenderError as exc:
        _fail(exc)
    typer.echo(f"inputs: {out / 'contact_sheet.png'}")
    typer.echo(f"report: {report}")


@app.command()
def synth(out: Path = typer.Argument(..., help="Output folder (NeRF-synthetic layout unless --layout)."),
          kind: str = typer.Option("object", help="What to synthesize: 'object' (one object, many views), "
                                                  "'collection' (many objects by category, DVR layout) or "
                                                  "'duplicates' (one photo of N copies of an object) or 'scenes' (N "
                                                  "NeRF-synthetic scenes, for `unrender many`)."),
          copies: int = typer.Option(8, help="--kind duplicates: number of copies in the photo."),
          scenes: int = typer.Option(10, help="--kind scenes: number of scenes (one object each, own folder)."),
          categories: int = typer.Option(3, help="--kind collection: number of categories (chair, table, airplane, "
                                                 "lamp, car, sofa)."),
          objects: int = typer.Option(10, help="--kind collection: objects per category."),
          family: str = typer.Option("auto", help=f"Shape family: {', '.join(FAMILIES)}; or 'auto' (picked by the seed)."),
          views: int | None = typer.Option(None, help="Object: training views (val gets views/4, test views/2; "
                                                      "default 100). Collection: views per object (default 24). "
                                                      "Scenes: training views per scene (test gets views/5; "
                                                      "default 50)."),
          resolution: int | None = typer.Option(None, help="Image size in pixels (default 256; 64 for a collection or "
                                                           "scenes; 768 for duplicates)."),
          seed: int = typer.Option(0, help="Random seed: same seed, same bytes."),
          layout: str = typer.Option("blender", help="Dataset layout: blender, blender-ngp, colmap-txt, colmap-bin, "
                                                     "llff, idr or json."),
          force: bool = typer.Option(False, help="Overwrite OUT if it holds a previous dataset.")):
    """Write a procedural textured object rendered from many views with its ground truth, or (--kind collection)
    a collection of procedural objects by category in DVR's ShapeNet layout, (--kind duplicates) one photo of
    many copies, or (--kind scenes) many one-object scenes."""
    from .data.layouts import LAYOUTS

    def write_object():
        from .data.synth import convert_to_layout, synthesize_object
        if layout not in LAYOUTS:
            raise UnrenderError(f"--layout {layout!r} is not known; use one of {', '.join(LAYOUTS)}.")
        synthesize_object(out, family=family, views=views or 100, resolution=resolution or 256, seed=seed,
                          force=force)
        convert_to_layout(out, layout)

    def write_collection():
        from .data.collection import synthesize_collection
        synthesize_collection(out, categories=categories, objects=objects, views=views or 24,
                              resolution=resolution or 64, seed=seed, force=force)

    def write_duplicates():
        from .data.duplicates import synthesize_duplicates
        synthesize_duplicates(out, copies=copies, resolution=resolution or 768, seed=seed, family=family, force=force)

    def write_scenes():
        from .data.scene_collection import synthesize_scenes
        synthesize_scenes(out, scenes=scenes, views=views or 50, test_views=max(1, (views or 50) // 5),
                          resolution=resolution or 64, seed=seed, force=force)

    writers = {"object": write_object, "collection": write_collection, "duplicates": write_duplicates,
               "scenes": write_scenes}
    try:
        if kind not in writers:
            raise UnrenderError(f"--kind {kind!r} is not known; use --kind {', '.join(writers)}.")
        writers[kind]()
    except UnrenderError as exc:
        _fail(exc)
    typer.echo(f"wrote {out}")


@app.command()
def render(mesh: Path = typer.Argument(..., help="OBJ, PLY, GLB or GLTF mesh to render."),
           out: Path = typer.Argument(..., help="Output folder (NeRF-synthetic layout)."),
           views: int = typer.Option(100, help="Training views; val gets views/4 and test views/2."),
           resolution: int = typer.Option(256, help="Image size in pixels."),
           env: Path | None = typer.Option(None, help="Lat-long .hdr environment; default: a procedural one."),
           seed: int = typer.Option(0, help="Random seed for cameras and the procedural environment."),
           force: bool = typer.Option(False, help="Overwrite OUT if it holds a previous dataset.")):
    """Render any mesh from many views into a NeRF-synthetic dataset (as nvdiffrec's mesh datasets)."""
    from .data.synth import render_mesh_dataset
    try:
        render_mesh_dataset(mesh, out, views=views, resolution=resolution, env_path=env, seed=seed, force=force)
    except UnrenderError as exc:
        _fail(exc)
    typer.echo(f"wrote {out}")


@app.command()
def reconstruct(data: Path = typer.Argument(..., help="Dataset folder: NeRF-synthetic, COLMAP, LLFF, IDR/DTU or "
                                                      "image+JSON layout."),
                out: Path = typer.Option(..., "--out", help="Output folder (mesh/, light/, test/, metrics.json, "
                                                           "report.html)."),
                preset: str = typer.Option("default", help="Preset: fast, default or quality."),
                set_: list[str] = typer.Option([], "--set", help="Override a config field, KEY=VALUE (repeatable), "
                                                                "e.g. --set pass1.iterations=300."),
                triangles: int | None = typer.Option(None, help="Triangle budget of the final mesh."),
                device: str | None = typer.Option(None, help="auto, cpu or cuda (default: the config's, auto)."),
                max_minutes: float | None = typer.Option(None, help="Training time budget; outputs are still "
                                                                   "written when it runs out."),
                gt_mesh: Path | None = typer.Option(None, help="Ground-truth mesh for geometry metrics."),
                resume: bool = typer.Option(False, help="Continue the run in OUT from its checkpoint."),
                force: bool = typer.Option(False, help="Overwrite a previous run in OUT.")):
    """Posed images with masks -> textured PBR mesh (OBJ, GLB) + HDR environment light."""
    from .recon.multiview import apply_overrides
    from .recon.multiview import preset as make_preset
    from .recon.multiview import reconstruct as run
    try:
        extra = [f"{k}={v}" for k, v in (("triangles", triangles), ("device", device), ("max_minutes", max_minutes))
                 if v is not None]
        cfg = apply_overrides(make_preset(preset), list(set_) + extra)
        run(data, out, cfg, gt_mesh=gt_mesh, resume=resume, force=force)
    except UnrenderError as exc:
        _fail(exc)
    typer.echo(f"report: {out / 'report.html'}")


@app.command("eval")
def evaluate(pred: Path = typer.Argument(..., help="Predicted mesh (OBJ, PLY, GLB)."),
             gt: Path = typer.Argument(..., help="Ground-truth mesh."),
             points: int = typer.Option(100_000, help="Surface samples per mesh."),
             seed: int = typer.Option(0, help="Sampling seed.")):
    """Chamfer-L1/L2, F-score@{0.005,0.01,0.02}, normal consistency (+ volume IoU when both are watertight),
    both meshes scaled so that the ground truth's bounding box has longest side 1."""
    from .io.mesh_files import load_mesh
    from .metrics.geometry import evaluate_meshes
    try:
        m = evaluate_meshes(load_mesh(pred), load_mesh(gt), n_points=points, seed=seed).to_dict()
    except UnrenderError as exc:
        _fail(exc)
    for k, v in m.items():
        typer.echo(f"{k:>24}: {v:.6f}" if isinstance(v, float) else f"{k:>24}: {v}")


def _register_singleview() -> None:
    from .cli_singleview import register
    from .cli_singleview_eval import eval_singleview

    register(app)  # `unrender train singleview`, `unrender predict`
    app.command("eval-singleview")(eval_singleview)


def _register_duplicates() -> None:
    from .cli_duplicates import register

    register(app)  # `unrender duplicates`


def _register_many() -> None:
    from .cli_many import register

    register(app)  # `unrender many fit`, `unrender many add`


_register_singleview()
_register_duplicates()
_register_many()


def main() -> None:  # console-script entry point
    from .allocator import retain_freed_memory

    retain_freed_memory()  # render loops reuse the same large buffers every step (see unrender/allocator.py)
    app()


if __name__ == "__main__":
    main()
