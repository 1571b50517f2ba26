"""Joint reconstruction of the shared object from its posed copies (Structure from Duplicates, stage 2).

The copies are the views (:mod:`.instance_views`); the multi-view machinery does the rest: visual hull ->
pass 1 (DMTet + material field + environment light) -> bake -> pass 2 (textures + vertex offsets + light).
What differs from :func:`unrender.recon.multiview.pipeline.reconstruct`:

* the light is fixed in the photo's camera frame, and every copy is rotated differently in it, so each
  view is rendered by moving the object into the photo frame with its pose ``T_k`` (the camera stays
  at the photo's origin with the crop's intrinsics) instead of moving the camera around a fixed object
  (which would rotate the light with the copy): :func:`render_in_photo_frame`;
* pixels of other copies and outside the photo carry no loss (``views.weight``), and count as object
  when carving the hull.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ...mesh import Mesh
from ...render.render_mesh import RenderOutput, render_mesh
from ...run_state import RunClock
from ..multiview.config import MultiViewConfig
from ..multiview.passes import Pass1, Pass2
from ..multiview.pipeline import bake_pass1, initial_shape, train_pass


def move_mesh(mesh: Mesh, T: torch.Tensor) -> Mesh:
    """``mesh`` with vertices ``x' = R x + t`` for the rigid ``T [4,4]`` (normals recomputed by the renderer)."""
    T = T.to(mesh.vertices)
    return replace(mesh, vertices=mesh.vertices @ T[:3, :3].T + T[:3, 3], normals=None)


def render_in_photo_frame(mesh: Mesh, camera, light, background=None, material_fn=None, topology=None,
                          shading: str = "pbr") -> RenderOutput:
    """Render ``mesh`` (object frame) from object-frame cameras with the light fixed in the photo frame.

    View ``b`` with camera-to-object ``C_b = camera.c2w[b]`` is rendered as the mesh moved by
    ``T_b = C_b^{-1}`` seen by a camera at the photo origin (``c2w = I``) with view ``b``'s intrinsics; a
    material field is queried back in the object frame, ``m(C_b x)``. Same outputs as :func:`render_mesh`.
    """
    outs = []
    eye = torch.eye(4, dtype=camera.c2w.dtype, device=camera.c2w.device)[None]
    for b in range(len(camera)):
        C = camera.c2w[b].to(mesh.vertices)
        T = torch.linalg.inv(C)
        fn = None
        if material_fn is not None:
            R, t = C[:3, :3], C[:3, 3]
            fn = lambda p, R=R, t=t: material_fn(p @ R.T + t)  # noqa: E731
        bg = background if background is None or torch.as_tensor(background).dim() < 4 else background[b:b + 1]
        outs.append(render_mesh(move_mesh(mesh, T), replace(camera[b], c2w=eye), light, background=bg,
                                material_fn=fn, topology=topology, shading=shading))
    cat = lambda name: torch.cat([getattr(o, name) for o in outs])  # noqa: E731
    return RenderOutput(*(cat(n) for n in ("color", "alpha", "depth", "normal", "albedo", "rast")))


def _axis_angle_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[V,3,3]`` of axis-angle vectors ``w [V,3]`` (Rodrigues; smooth at 0)."""
    theta = w.norm(dim=-1, keepdim=True).clamp_min(1e-12)[..., None]
    k = w / theta[..., 0]
    z = torch.zeros_like(k[:, 0])
    K = torch.stack([z, -k[:, 2], k[:, 1], k[:, 2], z, -k[:, 0], -k[:, 1], k[:, 0], z], -1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(K)
    return eye + torch.sin(theta) * K + (1 - torch.cos(theta)) * (K @ K)


class PoseCorrection(torch.nn.Module):
    """Learned corrections of the copies' poses: ``T_k' = E_k T_k`` with ``E_k = [R(w_k) | v_k]`` in the photo frame.

    ``delta [V,6]`` (axis-angle ``w``, translation ``v``) starts at 0; view 0 stays fixed, which removes the
    gauge (a rigid motion of the object frame) the images cannot see.
    """

    def __init__(self, views: int):
        super().__init__()
        self.delta = torch.nn.Parameter(torch.zeros(views, 6))

    def corrections(self, idx: torch.Tensor) -> torch.Tensor:
        """``E_k [B,4,4]`` of views ``idx``."""
        d = self.delta[idx] * (idx != 0).to(self.delta)[:, None]
        E = torch.zeros(len(idx), 4, 4, dtype=d.dtype, device=d.device)
        E[:, :3, :3], E[:, :3, 3], E[:, 3, 3] = _axis_angle_matrix(d[:, :3]), d[:, 3:], 1.0
        return E

    def apply(self, camera, idx: torch.Tensor):
        """``camera`` (camera-to-object ``C_k = T_k^-1``) with the corrected poses: ``C_k' = C_k E_k^-1``."""
        E = self.corrections(idx.to(self.delta.device)).to(camera.c2w)
        return replace(camera, c2w=camera.c2w @ torch.linalg.inv(E))


class _CopiesRendering:
    """Rendering of both passes over copies: poses corrected by ``self.poses`` (when set), photo-frame light."""

    poses: PoseCorrection | None = None

    def _camera(self, camera):
        return camera if self.poses is None else self.poses.apply(camera, self.view_idx)

    def add_pose_correction(self, poses: PoseCorrection | None, lr: float) -> None:
        self.poses = poses
        if poses is not None and lr > 0:
            self.opt.add_param_group({"params": [poses.delta], "lr": lr, "base_lr": lr})


class CopiesPass1(_CopiesRendering, Pass1):
    """:class:`Pass1` rendering every view in the photo frame (:func:`render_in_photo_frame`)."""

    def render(self, camera, background, gen):
        self._mesh = self.geometry.mesh()
        if self._mesh.num_faces == 0:
            return None, 0
        return render_in_photo_frame(self._mesh, self._camera(camera), self.light, background,
                                     material_fn=self.field), self._mesh.num_faces


class CopiesPass2(_CopiesRendering, Pass2):
    """:class:`Pass2` rendering every view in the photo frame (:func:`render_in_photo_frame`)."""

    def render(self, camera, background, gen):
        from ...render.antialias import build_topology

        if self.topology is None:
            self.topology = build_topology(self.base.faces)
        out = render_in_photo_frame(self.current_mesh(), self._camera(camera), self.light, background,
                                    topology=self.topology)
        return out, self.base.num_faces


def reconstruct_shared_object(views, hull, cfg: MultiViewConfig, out: Path, clock: RunClock | None = None,
                              budget_s: float = float("inf"), progress: bool = True, device="cpu",
                              lr_pose: float = 0.0, clip_radius: float | None = None):
    """Pass 1 and pass 2 over the copies' views -> ``(textured mesh on the CPU, light, loss history,
    corrected camera-to-object matrices [V,4,4])``.

    ``views`` come from :func:`.instance_views.instance_views`, ``hull`` (the whole-photo views that carve the
    initial shape) from :func:`.instance_views.hull_views`; checkpoints go to ``out/checkpoint``;
    training stops when ``clock.elapsed`` passes ``budget_s`` (60% of it for pass 1). With ``lr_pose > 0``
    the copies' poses are refined too (:class:`PoseCorrection`, Adam at that learning rate). ``clip_radius``
    bounds the initial shape to a ball about the object origin (:func:`..multiview.pipeline.initial_shape`).
    """
    clock = clock or RunClock(0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    history = {"pass1": [], "pass2": []}
    bounds, sdf_fn, _ = initial_shape(hull, cfg, None, clip_radius)
    p1 = CopiesPass1(cfg, bounds, sdf_fn, device)
    poses = PoseCorrection(len(views)).to(device) if lr_pose > 0 else None
    p1.add_pose_correction(poses, lr_pose)
    train_pass("pass1", "pass 1: shape", p1, cfg.pass1.iterations, 0, views, gen, clock, 0.6 * budget_s, out,
               bounds, history, cfg, progress)
    mesh = bake_pass1(p1, cfg)
    p2 = CopiesPass2(cfg, mesh, p1.light, device)
    p2.add_pose_correction(poses, lr_pose)
    train_pass("pass2", "pass 2: appearance", p2, cfg.pass2.iterations, 0, views, gen, clock, budget_s, out, bounds,
               history, cfg, progress)
    with torch.no_grad():
        m = p2.current_mesh()
        mat = m.material.to(device="cpu")
        for t in ("base_color", "orm", "normal"):
            setattr(mat, t, getattr(mat, t).detach())
        final = Mesh(m.vertices.detach().cpu(), m.faces.cpu(), uvs=m.uvs.cpu(), uv_faces=m.uv_faces.cpu(), material=mat)
        all_views = torch.arange(len(views))
        c2o = (views.camera if poses is None else poses.apply(views.camera, all_views)).c2w.detach().cpu()
    return final, p2.light.cpu(), history, c2o
