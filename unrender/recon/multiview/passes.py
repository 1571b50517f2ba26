"""The two optimisation passes of multi-view reconstruction, each a small stateful object.

**Pass 1** (topology): a DMTet grid (SDF + deformation per grid vertex; or FlexiCubes with its
interpolation weights, ``pass1.topology``) initialised from the visual hull, a
:class:`~unrender.geometry.fields.MaterialField`, and a learnable
:class:`~unrender.render.lights.environment.EnvironmentLight`. Every step extracts the mesh with
marching tetrahedra, renders ``batch_size`` random views over random background colours and minimises

    L = image_logl1 + w_mask * mask_mse + w_sdf(t) * sdf_sign_reg + w_smooth * material_smooth + w_light * white_balance

with ``w_sdf`` decaying linearly from ``sdf_reg_start`` to ``sdf_reg_end``.

**Pass 2** (appearance + refinement): the pass-1 mesh, cleaned (small components dropped,
optionally simplified), unwrapped with xatlas; the field is baked into base-colour and ORM textures
and a flat normal map; vertex offsets (with a uniform-Laplacian penalty), textures and light are
fine-tuned with the same image and mask losses.

Learning rates follow a short linear warm-up then an exponential decay to 10% at the last step.
"""

from __future__ import annotations

import torch

from ...errors import InputError
from ...geometry.dmtet import DMTetGeometry, laplacian_loss, sdf_sign_regularizer
from ...geometry.flexicubes import FlexiCubesGeometry
from ...geometry.fields import MaterialField
from ...mesh import Mesh, PBRMaterial
from ...render.antialias import build_topology
from ...render.lights.environment import EnvironmentLight
from ...render.render_mesh import render_mesh
from .losses import image_loss, light_white_balance, mask_loss, material_smoothness


def lr_factor(it: int, total: int, warmup: int = 20) -> float:
    """Warm-up over ``warmup`` steps, then ``10^(-t)`` with ``t`` going 0 -> 1 over the run."""
    w = min(1.0, (it + 1) / warmup)
    return w * 10.0 ** (-it / max(total, 1))


def _set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor


def _adam(groups) -> torch.optim.Optimizer:
    opt = torch.optim.Adam([{"params": p, "lr": lr, "base_lr": lr} for p, lr in groups], betas=(0.9, 0.99), eps=1e-8)
    return opt


def _random_backgrounds(n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, 1, 1, 3, generator=gen).to(device)


class _Pass:
    """What both passes do each step: pick views and backgrounds, render, image + mask (+ light) losses, Adam.

    Subclasses set ``cfg``, ``device``, ``light``, ``opt`` and implement :meth:`render` and :meth:`extra_loss`.
    """

    def settings(self):  # the pass's config section
        raise NotImplementedError

    def render(self, camera, background, gen):
        """``(RenderOutput, faces)`` or ``(None, 0)`` when there is nothing to render."""
        raise NotImplementedError

    def extra_loss(self, it: int, gen) -> torch.Tensor | float:
        return 0.0

    def step(self, views, it: int, gen: torch.Generator) -> dict:
        """One optimisation step; ``it`` places it on the schedules (:func:`.pipeline.schedule_step`)."""
        c = self.settings()
        _set_lr(self.opt, lr_factor(it, c.iterations))
        idx = torch.randint(len(views), (c.batch_size,), generator=gen)
        bg = _random_backgrounds(len(idx), gen, self.device)
        self.view_idx = idx  # which views this step renders (subclasses with per-view parameters read it)
        target, mask = views.targets(idx.to(views.color.device), bg)
        weight = None if views.weight is None else views.weight[idx.to(views.weight.device)]
        self.opt.zero_grad(set_to_none=True)
        self.light.build()
        out, faces = self.render(views.camera[idx], bg.expand(-1, *target.shape[1:3], 3), gen)
        loss = self.extra_loss(it, gen)
        l_img = l_mask = torch.full((), float("nan"))
        if out is not None:
            l_img, l_mask = image_loss(out.color, target, weight), mask_loss(out.alpha, mask, weight)
            loss = loss + l_img + self.cfg.mask_weight * l_mask
            if self.cfg.light_white_balance > 0:
                loss = loss + self.cfg.light_white_balance * light_white_balance(self.light.base)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.light.base.clamp_(min=0.0)
        return {"loss": loss.item(), "image": l_img.item(), "mask": l_mask.item(), "faces": faces}


class Pass1(_Pass):
    """DMTet + material field + light (module docstring)."""

    def __init__(self, cfg, bounds: torch.Tensor, sdf_fn, device):
        c1 = cfg.pass1
        self.cfg, self.device = cfg, device
        self.bounds = bounds.to(device)
        topologies = {"dmtet": DMTetGeometry, "flexicubes": FlexiCubesGeometry}
        if c1.topology not in topologies:
            raise InputError(f"pass1.topology must be dmtet or flexicubes; got {c1.topology!r}.")
        self.geometry = topologies[c1.topology].from_sdf_function(sdf_fn, c1.tet_resolution,
                                                                  self.bounds.cpu()).to(device)
        if c1.sdf_init_truncation > 0:
            t = c1.sdf_init_truncation * self.geometry.spacing
            with torch.no_grad():
                self.geometry.sdf.clamp_(-t, t)
        self.field = MaterialField(self.bounds, levels=c1.field_levels, max_res=c1.field_max_res,
                                   hidden=c1.field_hidden, normal_offset=c1.normal_offset).to(device)
        self.light = EnvironmentLight(resolution=cfg.light_resolution, init=0.5).to(device)
        self.opt = _adam([([self.geometry.sdf], c1.lr_sdf * self.geometry.spacing),
                          ([self.geometry.deform], c1.lr_deform),
                          (list(self.field.parameters()), c1.lr_material),
                          ([self.light.base], c1.lr_light)]
                         + ([([self.geometry.weights], c1.lr_weights)] if c1.topology == "flexicubes" else []))
        self.scale = scene_scale(self.bounds)
        self.smooth_sigma = 0.01 * self.scale

    def settings(self):
        return self.cfg.pass1

    def render(self, camera, background, gen):
        self._mesh = self.geometry.mesh()
        if self._mesh.num_faces == 0:  # everything carved away: only the regulariser can bring it back
            return None, 0
        return render_mesh(self._mesh, camera, self.light, background=background, material_fn=self.field), \
            self._mesh.num_faces

    def extra_loss(self, it: int, gen) -> torch.Tensor:
        c1, mesh = self.cfg.pass1, self._mesh
        loss = self._sdf_reg(it)
        if mesh.num_faces and c1.laplacian > 0:
            loss = loss + c1.laplacian * laplacian_loss(mesh.vertices / self.scale, mesh.faces)
        if mesh.num_faces and c1.material_smooth > 0:
            pts = mesh.vertices.detach()
            pts = pts[torch.randint(pts.shape[0], (min(4096, pts.shape[0]),), generator=gen)]
            loss = loss + c1.material_smooth * material_smoothness(self.field, pts, self.smooth_sigma, gen)
        return loss

    def _sdf_reg(self, it: int) -> torch.Tensor:
        c1 = self.cfg.pass1
        t = it / max(c1.iterations - 1, 1)
        w = c1.sdf_reg_start + (c1.sdf_reg_end - c1.sdf_reg_start) * t
        return w * sdf_sign_regularizer(self.geometry.sdf, self.geometry.grid.edges)

    def state_dict(self) -> dict:
        return {"geometry": self.geometry.state_dict(), "field": self.field.state_dict(),
                "light": self.light.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.geometry.load_state_dict(state["geometry"])
        self.field.load_state_dict(state["field"])
        self.light.load_state_dict(state["light"])
        self.opt.load_state_dict(state["opt"])


class Pass2(_Pass):
    """Textured mesh + vertex offsets + light (module docstring).

    ``mesh`` carries the unwrapped topology (vertices, faces, uvs, uv_faces) and the baked material.
    """

    def __init__(self, cfg, mesh: Mesh, light: EnvironmentLight, device):
        c2 = cfg.pass2
        self.cfg, self.device = cfg, device
        self.base = mesh.to(device=device)
        mat = self.base.material
        self.offsets = torch.nn.Parameter(torch.zeros_like(self.base.vertices))
        self.kd = torch.nn.Parameter(mat.base_color.clone())
        self.orm = torch.nn.Parameter(mat.orm.clone())
        flat = torch.zeros_like(mat.base_color)
        flat[..., 2] = 1.0
        self.normal = torch.nn.Parameter(mat.normal.clone() if mat.normal is not None else flat)
        self.light = light
        self.scale = float((self.base.vertices.amax(0) - self.base.vertices.amin(0)).max())
        groups = [([self.offsets], c2.lr_positions * self.scale), ([self.kd, self.orm], c2.lr_textures),
                  ([self.light.base], c2.lr_light)]
        if c2.learn_normal_map:
            groups.append(([self.normal], c2.lr_textures))
        self.opt = _adam(groups)
        self.topology = None

    def current_mesh(self) -> Mesh:
        """The mesh with the current offsets and textures (textures clamped into their valid ranges)."""
        orm = torch.cat([torch.ones_like(self.orm[..., :1]), self.orm[..., 1:2].clamp(0.08, 1.0),
                         self.orm[..., 2:3].clamp(0.0, 1.0)], -1)
        mat = PBRMaterial(base_color=self.kd.clamp(0.0, 1.0), orm=orm, normal=self.normal)
        return Mesh(self.base.vertices + self.offsets, self.base.faces, uvs=self.base.uvs,
                    uv_faces=self.base.uv_faces, material=mat)

    def settings(self):
        return self.cfg.pass2

    def render(self, camera, background, gen):
        if self.topology is None:
            self.topology = build_topology(self.base.faces)
        out = render_mesh(self.current_mesh(), camera, self.light, background=background, topology=self.topology)
        return out, self.base.num_faces

    def extra_loss(self, it: int, gen) -> torch.Tensor:
        return self.cfg.pass2.laplacian * laplacian_loss(self.offsets / self.scale, self.base.faces)

    def state_dict(self) -> dict:
        b = self.base
        return {"vertices": b.vertices, "faces": b.faces, "uvs": b.uvs, "uv_faces": b.uv_faces,
                "offsets": self.offsets.detach(), "kd": self.kd.detach(), "orm": self.orm.detach(),
                "normal": self.normal.detach(), "light": self.light.state_dict(), "opt": self.opt.state_dict()}

    @classmethod
    def from_state_dict(cls, cfg, state: dict, device) -> "Pass2":
        light = EnvironmentLight(resolution=cfg.light_resolution).to(device)
        light.load_state_dict(state["light"])
        mat = PBRMaterial(base_color=state["kd"], orm=state["orm"], normal=state["normal"])
        mesh = Mesh(state["vertices"], state["faces"], uvs=state["uvs"], uv_faces=state["uv_faces"], material=mat)
        p2 = cls(cfg, mesh, light, device)
        with torch.no_grad():
            p2.offsets.copy_(state["offsets"])
        p2.opt.load_state_dict(state["opt"])
        return p2


def scene_scale(bounds: torch.Tensor) -> float:
    """Longest side of a ``[2,3]`` box."""
    return float((bounds[1] - bounds[0]).max())


def padded_bounds(bounds: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """``bounds [2,3]`` grown by ``margin`` of its longest side on every face (a cube would also do, but a
    tight box spends the grid's resolution where the object is)."""
    pad = margin * scene_scale(bounds)
    return torch.stack([bounds[0] - pad, bounds[1] + pad])

