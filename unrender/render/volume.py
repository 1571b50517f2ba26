"""Volume rendering primitives: ray/box clipping, stratified and importance sampling, alpha compositing.

Shared by every field-based method (SDF pre-pass of multi-view reconstruction, tri-plane scenes).
A ray ``r(t) = o + t d`` is cut into ``n`` intervals with edges ``t_0 < ... < t_n``; interval ``i``
has opacity ``alpha_i`` and a value ``c_i`` (colour, features). Compositing front to back::

    T_i = prod_{j<i} (1 - alpha_j)          (transmittance)
    w_i = T_i * alpha_i                     (weights, sum_i w_i = 1 - T_n = opacity)
    C   = sum_i w_i c_i + (1 - opacity) * background
    D   = sum_i w_i t_mid_i                 (expected depth, not normalised by the opacity)

Opacity from a density ``sigma`` (NeRF): ``alpha_i = 1 - exp(-sigma_i * (t_{i+1} - t_i))``.
Opacity from a signed distance ``f`` (NeuS's unbiased discrete form, logistic CDF ``Phi_s(x) = sigmoid(s x)``)::

    alpha_i = max((Phi_s(f(t_i)) - Phi_s(f(t_{i+1}))) / Phi_s(f(t_i)), 0)

which is 0 while the ray moves away from the surface and approaches 1 when it crosses it, as
``s`` grows.

Example:
    >>> o, d = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]])
    >>> near, far = ray_box_intersection(o, d, torch.tensor([[-1.0, -1, 2], [1.0, 1, 3]]))
    >>> edges = stratified_edges(near, far, 8)
    >>> alpha = alpha_from_density(torch.full((1, 8), 50.0), edges.diff(dim=-1))
    >>> out = composite(alpha, torch.ones(1, 8, 3), edges)
    >>> round(float(out.opacity), 4)
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass
class VolumeRenderOutput:
    """Composited ray values.

    Attributes:
        color: ``[R,C]`` composited values (over ``background`` when one was given).
        opacity: ``[R,1]`` accumulated opacity ``1 - T_n``.
        depth: ``[R,1]`` expected depth ``sum_i w_i t_mid_i`` (0 for an empty ray).
        weights: ``[R,n]`` compositing weights ``w_i``.
    """

    color: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    weights: torch.Tensor


def ray_box_intersection(origins: torch.Tensor, directions: torch.Tensor, bounds: torch.Tensor,
                         min_near: float = 0.0):
    """Slab test: ``(near [R], far [R])`` where each ray enters and leaves the box ``bounds [2,3]``.

    ``near`` is clamped to ``min_near`` (rays starting inside the box); rays that miss get
    ``near == far``. Directions need not be unit length; ``t`` is in units of ``|d|``.

    Example:
        >>> ray_box_intersection(torch.tensor([[0.0, 0, -5]]), torch.tensor([[0.0, 0, 1]]),
        ...                      torch.tensor([[-1.0, -1, -1], [1.0, 1, 1]]))
        (tensor([4.]), tensor([6.]))
    """
    if bounds.shape != (2, 3):
        raise InputError(f"bounds must be [2,3] (min, max corners); got {tuple(bounds.shape)}.")
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (bounds[0] - origins) / safe
    t1 = (bounds[1] - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(min_near)
    far = torch.maximum(t0, t1).amin(-1)
    return near, torch.maximum(far, near)


def stratified_edges(near: torch.Tensor, far: torch.Tensor, n: int, generator: torch.Generator | None = None,
                     jitter: bool = False) -> torch.Tensor:
    """Interval edges ``[R, n+1]`` from ``near`` to ``far`` in ``n`` equal bins.

    With ``jitter`` the inner edges move uniformly within half a bin either way (stratified
    sampling), so that training sees every depth; the first and last edge stay at ``near``/``far``.

    Example:
        >>> stratified_edges(torch.tensor([0.0]), torch.tensor([1.0]), 4)
        tensor([[0.0000, 0.2500, 0.5000, 0.7500, 1.0000]])
    """
    if n < 1:
        raise InputError(f"n (samples per ray) must be >= 1; got {n}.")
    u = torch.linspace(0.0, 1.0, n + 1, dtype=near.dtype, device=near.device).expand(near.shape[0], n + 1)
    if jitter and n > 1:
        shift = (torch.rand(near.shape[0], n - 1, generator=generator, dtype=near.dtype) - 0.5).to(near.device)
        u = torch.cat([u[:, :1], u[:, 1:-1] + shift / n, u[:, -1:]], 1)
    return near[:, None] + (far - near)[:, None] * u


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, n: int, generator: torch.Generator | None = None,
               deterministic: bool = False) -> torch.Tensor:
    """Importance sampling: ``n`` depths ``[R,n]`` (sorted) drawn from the piecewise-constant pdf of ``weights``.

    ``edges [R,m+1]`` bound the ``m`` bins of ``weights [R,m]``; the inverse CDF maps ``u ~ U(0,1)``
    (or an even grid of ``u`` when ``deterministic``) to depths. A small floor on the weights keeps
    empty rays sampling uniformly. No gradient flows to ``weights``.

    Example:
        >>> e = torch.linspace(0, 1, 5)[None]
        >>> t = sample_pdf(e, torch.tensor([[0.0, 0.0, 1.0, 0.0]]), 3, deterministic=True)
        >>> bool(((t > 0.49) & (t < 0.76)).all())
        True
    """
    w = weights.detach() + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], -1).clamp(max=1.0)
    if deterministic:
        u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=edges.dtype, device=edges.device).expand(edges.shape[0], n)
    else:
        u = torch.rand(edges.shape[0], n, generator=generator, dtype=edges.dtype).to(edges.device)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, cdf.shape[-1] - 1)
    c0, c1 = cdf.gather(-1, idx - 1), cdf.gather(-1, idx)
    e0, e1 = edges.detach().gather(-1, idx - 1), edges.detach().gather(-1, idx)
    frac = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0, 1)
    return (e0 + frac * (e1 - e0)).sort(-1).values


def alpha_from_density(density: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """NeRF opacity ``1 - exp(-relu(sigma) * delta)`` per interval, ``[R,n]``."""
    return 1.0 - torch.exp(-torch.relu(density) * deltas)


def neus_alpha(sdf_at_edges: torch.Tensor, sharpness: float | torch.Tensor) -> torch.Tensor:
    """NeuS's discrete opacity ``[R,n]`` from signed distances at the ``n+1`` interval edges (module docstring).

    ``sharpness`` is ``s`` of the logistic CDF ``sigmoid(s f)``: the surface's opacity band is about
    ``4/s`` thick. Computed in log space for stability: ``alpha = 1 - exp(log Phi(f_{i+1}) - log Phi(f_i))``.

    Example:
        >>> f = torch.linspace(0.5, -0.5, 11)[None]   # a ray crossing a plane at its middle
        >>> a = neus_alpha(f, 200.0)
        >>> round(float(1 - (1 - a).prod()), 3)
        1.0
    """
    logphi = torch.nn.functional.logsigmoid(sdf_at_edges * sharpness)
    return (1.0 - torch.exp(logphi[:, 1:] - logphi[:, :-1])).clamp(0.0, 1.0)


def composite(alpha: torch.Tensor, values: torch.Tensor, edges: torch.Tensor,
              background: torch.Tensor | None = None) -> VolumeRenderOutput:
    """Front-to-back alpha compositing (module docstring).

    Args:
        alpha: ``[R,n]`` interval opacities in [0,1].
        values: ``[R,n,C]`` interval values.
        edges: ``[R,n+1]`` interval edges (for the depth).
        background: ``[R,C]`` or ``[C]`` value behind the volume, or None (premultiplied result).

    Example:
        >>> out = composite(torch.tensor([[0.5, 0.5]]), torch.tensor([[[1.0], [0.0]]]), torch.tensor([[0.0, 1, 2]]))
        >>> out.color, out.opacity
        (tensor([[0.5000]]), tensor([[0.7500]]))
    """
    if alpha.dim() != 2 or values.shape[:2] != alpha.shape or edges.shape != (alpha.shape[0], alpha.shape[1] + 1):
        raise InputError(f"composite expects alpha [R,n], values [R,n,C], edges [R,n+1]; got "
                         f"{tuple(alpha.shape)}, {tuple(values.shape)}, {tuple(edges.shape)}.")
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], 1), 1)[:, :-1]
    w = trans * alpha
    opacity = w.sum(-1, keepdim=True)
    color = (w[..., None] * values).sum(1)
    if background is not None:
        color = color + (1.0 - opacity) * background
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    depth = (w * mids).sum(-1, keepdim=True)
    return VolumeRenderOutput(color, opacity, depth, w)
