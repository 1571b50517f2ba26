"""One image -> one mesh with a trained single-view run: ``load_predictor(RUN).predict(images)``.

The network is rebuilt from ``RUN/best.pt`` (its config, weights, training image size and background), so a
run folder is all ``predict`` needs. Meshes come out in the collection's canonical object frame (y up,
centred, longest side about 1): DIB-R's deformed template with per-vertex linear colours, or the implicit
model's zero level set (marching cubes on ``implicit.mesh_resolution^3`` points in
``[-mesh_bounds, mesh_bounds]^3``).

Input images are prepared as the training images were (:func:`prepare_images`): RGBA images are composited
over the training background (alpha = mask: ``rgb a + bg (1 - a)``, in linear space, as the collection is
rendered), RGB images are taken as already shown over that background; non-square images are padded with the
background to a square, then resized to the training size (bilinear, antialiased).

Example:
    >>> predictor = load_predictor("runs/chairs")                         # doctest: +SKIP
    >>> meshes = predictor.predict(torch.rand(2, 64, 64, 4))              # doctest: +SKIP
    >>> predict_files(["chair.png"], "runs/chairs", "out")                # doctest: +SKIP
    [PosixPath('out/chair.obj'), PosixPath('out/chair.glb')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checks import float_tensor
from ..color import srgb_to_linear
from ..errors import DataError, InputError
from ..mesh import Mesh
from ..distributed import pick_device
from .train_config import SingleViewConfig, config_from_dict
from .training import BEST, FORMAT, build_model


def prepare_images(images, size: tuple[int, int], background: float = 1.0, srgb: bool = False) -> torch.Tensor:
    """``images [B,H,W,3|4]`` (or one ``[H,W,3|4]``) in [0, 1] -> model input ``[B,3,h,w]`` linear (module docstring).

    ``out = resize(pad_square(rgb a + bg (1 - a)))`` with ``rgb`` converted sRGB -> linear first when ``srgb``;
    ``a = 1`` for RGB images.

    Example:
        >>> img = torch.zeros(1, 10, 20, 4)                               # fully transparent, non-square
        >>> x = prepare_images(img, (16, 16), background=1.0)
        >>> x.shape, round(x.min().item(), 4)
        (torch.Size([1, 3, 16, 16]), 1.0)
    """
    images = float_tensor("images", images, "[B,H,W,C] or [H,W,C] with C = 3 or 4", ndims=(3, 4))
    images = images[None] if images.dim() == 3 else images
    if images.shape[-1] not in (3, 4):
        hint = " (channels first? use images.permute(0, 2, 3, 1))" if images.shape[1] in (3, 4) else ""
        raise InputError(f"images must be [B,H,W,3] (RGB) or [B,H,W,4] (RGBA), channels last; got "
                         f"{tuple(images.shape)}{hint}.")
    if not torch.isfinite(images).all():
        raise InputError("images hold NaN or infinite values; give colours in [0, 1].")
    images = images.clamp(0.0, 1.0)
    rgb = srgb_to_linear(images[..., :3]) if srgb else images[..., :3]
    if images.shape[-1] == 4:
        alpha = images[..., 3:]
        rgb = rgb * alpha + background * (1.0 - alpha)
    x = rgb.permute(0, 3, 1, 2)
    h, w = x.shape[2:]
    if h != w:  # pad to a square, centred: the training images frame the object in a square
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = nn.functional.pad(x, (left, side - w - left, top, side - h - top), value=float(background))
    if tuple(x.shape[2:]) != tuple(size):
        x = nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


@dataclass
class SingleViewPredictor:
    """A trained single-view network ready to turn images into meshes.

    Attributes:
        model: the network (eval mode) on ``device``.
        config: the run's :class:`~unrender.singleview.train_config.SingleViewConfig`.
        image_size: ``(H, W)`` the network was trained at.
        background: training background grey level (RGBA inputs are composited over it).
        device: where the network runs.
        metrics: validation metrics of the checkpoint.
    """

    model: nn.Module
    config: SingleViewConfig
    image_size: tuple[int, int]
    background: float
    device: torch.device
    metrics: dict = field(default_factory=dict)

    def predict(self, images, srgb: bool = False) -> list[Mesh]:
        """Meshes for ``images [B,H,W,3|4]`` (or one ``[H,W,3|4]``) in [0, 1]: linear RGB(A) by default (unrender
        tensors are linear), sRGB when ``srgb=True`` (as read from 8-bit files; alpha is never converted).

        Returns ``B`` :class:`~unrender.mesh.Mesh` in the canonical object frame, on the CPU: DIB-R meshes carry
        ``vertex_colors`` (linear); implicit meshes may be empty (``faces [0,3]``) when no surface is predicted.

        Example:
            >>> load_predictor("runs/chairs").predict(torch.rand(64, 64, 3))[0].faces.shape   # doctest: +SKIP
            torch.Size([1280, 3])
        """
        x = prepare_images(images, self.image_size, self.background, srgb).to(self.device)
        dtype = next(self.model.parameters()).dtype
        x = x.to(dtype)
        meshes = []
        with torch.no_grad():
            if self.config.model == "dibr":
                out = self.model(x)
                faces = out.faces.cpu()
                for b in range(x.shape[0]):
                    meshes.append(Mesh(vertices=out.vertices[b].float().cpu(), faces=faces,
                                       vertex_colors=out.colors[b].float().cpu()))
            else:
                from . import extract_mesh

                m = self.config.implicit
                for b in range(x.shape[0]):
                    meshes.append(extract_mesh(self.model, x[b], resolution=m.mesh_resolution,
                                               bounds=m.mesh_bounds, coarse_resolution=m.mesh_coarse_resolution,
                                               level=m.mesh_level))
        return meshes


def load_predictor(run_dir, device: str = "auto") -> SingleViewPredictor:
    """Rebuild the best network of the run in ``run_dir`` from ``run_dir/best.pt`` (``torch.load`` with
    ``weights_only=True``).

    Args:
        run_dir: a folder written by :func:`unrender.singleview.training.train_singleview`.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Example:
        >>> p = load_predictor("runs/chairs", device="cpu")                # doctest: +SKIP
        >>> p.config.model, p.image_size                                   # doctest: +SKIP
        ('dibr', (64, 64))
    """
    path = Path(run_dir) / BEST
    if not path.is_file():
        hint = (" (training has not finished a validation yet)" if (Path(run_dir) / "config.json").is_file()
                else "; point --run at a folder written by `unrender train singleview`")
        raise DataError(f"{path} does not exist{hint}.")
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or foreign files
        raise DataError(f"{path} could not be read as a checkpoint ({str(exc)[:160]}); retrain or copy it again.") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path} is not a single-view checkpoint of this version of unrender; retrain the run.")
    cfg = config_from_dict(payload["config"], str(path))
    model = build_model(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}'s weights do not fit its config ({str(exc)[:160]}); retrain the run.") from None
    dev = pick_device(device)
    model = model.to(dev).eval()
    h, w = (int(s) for s in payload["image_size"])
    return SingleViewPredictor(model, cfg, (h, w), float(payload["background"]), dev, dict(payload["metrics"]))


def predict_files(paths, run, out, device: str = "auto", force: bool = False) -> list[Path]:
    """Read images, predict one mesh each, write ``out/<stem>.obj`` (+ ``.mtl``) and ``out/<stem>.glb``.

    Every image is read before anything is written, so an unreadable file stops the command with one sentence
    naming it and no partial output. Files are 8-bit/16-bit PNG, JPEG, ... (sRGB) with or without alpha.

    Args:
        paths: image files.
        run: run folder (``best.pt``).
        out: output folder (created).
        device: ``auto``, ``cpu`` or ``cuda``.
        force: overwrite existing ``out/<stem>.obj`` / ``.glb`` files.
    Returns:
        the files written, in input order.

    Example:
        >>> predict_files(["a.png", "b.png"], "runs/chairs", "meshes")      # doctest: +SKIP
    """
    from ..io.images import read_image
    from ..io.mesh_files import save_mesh

    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no image given; pass one or more image files.")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"several images share the name {dup[0]!r} (outputs are named by the image's stem); "
                         f"rename them or predict them into separate --out folders.")
    out = Path(out)
    if not force:
        existing = [out / f"{s}{ext}" for s in stems for ext in (".obj", ".glb") if (out / f"{s}{ext}").exists()]
        if existing:
            raise InputError(f"{existing[0]} already exists; choose another --out or pass --force to overwrite.")
    images = []
    for p in paths:
        img = read_image(p)  # DataError naming the file when it is missing or unreadable
        if img.shape[-1] not in (3, 4) or min(img.shape[:2]) < 4:
            raise DataError(f"Image file {p} is not an RGB(A) image of at least 4x4 pixels; re-save it as RGB or "
                            f"RGBA PNG.")
        images.append(img)
    predictor = load_predictor(run, device)
    meshes = [predictor.predict(img, srgb=True)[0] for img in images]
    empty = [str(p) for p, m in zip(paths, meshes) if m.faces.shape[0] == 0]
    if empty:
        raise InputError(f"the model predicts no surface for {empty[0]}; check that the image shows one object over "
                         f"the training background, or train the run longer.")
    written: list[Path] = []
    for stem, mesh in zip(stems, meshes):
        written += [out / f"{stem}.obj", out / f"{stem}.glb"]
        save_mesh(mesh, out / f"{stem}.obj")
        save_mesh(mesh, out / f"{stem}.glb")
    return written
