"""Image metrics: PSNR, SSIM, mask IoU, and compositing over a background.

Images are ``[..., H, W, C]`` tensors (any number of leading batch dimensions, top row first) with
values in ``[0, max_val]``; numpy arrays are accepted. Metrics return 0-dim float64 tensors (call
``float()`` for a report); :func:`ssim` and :func:`psnr` are differentiable in ``pred``.

Example:
    >>> a = torch.zeros(2, 8, 8, 3)
    >>> round(float(psnr(a, a + 0.1)), 4)
    20.0
"""

from __future__ import annotations

import torch

from ..checks import float_tensor
from ..errors import InputError


def _images(name: str, x, dims: int = 3) -> torch.Tensor:
    x = float_tensor(name, x, "[...,H,W,C]")
    if x.dim() < dims:
        raise InputError(f"{name} must have shape [...,H,W,C] (at least 3 dimensions); got {tuple(x.shape)}.")
    return x


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _images("pred", pred), _images("target", target)
    if p.shape != t.shape:
        raise InputError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape.")
    dtype = torch.promote_types(p.dtype, t.dtype)
    return p.to(dtype), t.to(dtype).to(p.device)


def psnr(pred, target, mask=None, max_val: float = 1.0) -> torch.Tensor:
    """Mean over images of the per-image peak signal-to-noise ratio, in dB.

    For each image ``i`` (all leading dimensions flattened): ``MSE_i = sum_p m_p |pred_p - target_p|^2 /
    (C sum_p m_p)`` over its pixels ``p`` and channels, with weights ``m = mask`` (``[...,H,W,1]`` or
    ``[...,H,W]``, default all ones), and ``PSNR_i = 10 log10(max_val^2 / MSE_i)``; the result is
    ``mean_i PSNR_i`` (``inf`` if some image matches exactly). Averaging per-image PSNR (not the PSNR
    of the pooled MSE) is what NeRF-style benchmarks report.

    Example:
        >>> round(float(psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.01))), 4)
        40.0
    """
    p, t = _pair(pred, target)
    h, w, c = p.shape[-3:]
    err = ((p - t) ** 2).reshape(-1, h * w, c)
    if mask is None:
        mse = err.mean(dim=(1, 2))
    else:
        m = float_tensor("mask", mask, "[...,H,W,1]").to(p.device, p.dtype)
        if m.shape[-1] != 1 or m.dim() != p.dim():
            m = m.unsqueeze(-1)
        if m.shape[-3:-1] != (h, w) or m.numel() * c != p.numel():
            raise InputError(f"mask must have shape {tuple(p.shape[:-1]) + (1,)}; got {tuple(mask.shape)}.")
        m = m.reshape(-1, h * w, 1)
        total = m.sum(dim=(1, 2))
        if bool((total <= 0).any()):
            raise InputError("mask is empty for at least one image; PSNR needs at least one masked pixel.")
        mse = (err * m).sum(dim=(1, 2)) / (total * c)
    return (10.0 * torch.log10(max_val ** 2 / mse)).double().mean()


def _gaussian_window(sigma: float, radius: int, dtype, device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred, target, max_val: float = 1.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), mean over images, channels and valid pixels.

    With Gaussian-weighted local statistics (window ``11 x 11`` = radius ``int(3.5 sigma + 0.5)``,
    ``sigma = 1.5``, separable), per channel: ``mu_x = g * x``, ``s_x^2 = g * x^2 - mu_x^2``,
    ``s_xy = g * (x y) - mu_x mu_y`` (population covariances), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``,
    ``L = max_val``, and

        ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``,

    averaged over the pixels whose window lies inside the image (a border of ``radius`` pixels is
    left out), over channels, then over images. Equals ``skimage.metrics.structural_similarity(x, y,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=max_val, channel_axis=-1)``
    per image. Images ``[...,H,W,C]`` need ``H, W >= 11``.

    Example:
        >>> x = torch.rand(16, 16, 3)
        >>> float(ssim(x, x))
        1.0
    """
    p, t = _pair(pred, target)
    h, w, c = p.shape[-3:]
    radius = int(3.5 * sigma + 0.5)
    if min(h, w) < 2 * radius + 1:
        raise InputError(f"ssim needs images of at least {2 * radius + 1}x{2 * radius + 1} pixels; got {h}x{w}.")
    # [N*C, 1, H, W]: every channel of every image filtered independently.
    x = p.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = t.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    g = _gaussian_window(sigma, radius, p.dtype, p.device)

    def blur(z):
        z = torch.nn.functional.conv2d(z, g.reshape(1, 1, -1, 1))
        return torch.nn.functional.conv2d(z, g.reshape(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.double().mean()


def mask_iou(pred_mask, gt_mask, threshold: float = 0.5) -> torch.Tensor:
    """Mean over images of ``|P and G| / |P or G|`` with ``P = pred_mask > threshold``, ``G = gt_mask > threshold``.

    Masks are ``[...,H,W,1]`` or ``[...,H,W]`` (bool or float); an image where both masks are empty
    counts as IoU 1.

    Example:
        >>> a = torch.zeros(1, 4, 4, 1); a[0, :2] = 1
        >>> b = torch.zeros(1, 4, 4, 1); b[0, 1:3] = 1
        >>> round(float(mask_iou(a, b)), 4)
        0.3333
    """
    def binary(name, m):
        m = torch.as_tensor(m)
        m = m if m.dtype == torch.bool else float_tensor(name, m, "[...,H,W,1]") > threshold
        if m.dim() < 2:
            raise InputError(f"{name} must have shape [...,H,W,1] or [...,H,W]; got {tuple(m.shape)}.")
        return m

    p, g = binary("pred_mask", pred_mask), binary("gt_mask", gt_mask)
    if p.shape != g.shape:
        raise InputError(f"pred_mask {tuple(p.shape)} and gt_mask {tuple(g.shape)} must have the same shape.")
    if p.shape[-1] == 1 and p.dim() >= 3:
        p, g = p[..., 0], g[..., 0]
    p, g = p.reshape(-1, p.shape[-2] * p.shape[-1]), g.reshape(-1, g.shape[-2] * g.shape[-1]).to(p.device)
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).mean()


def composite(rgb, alpha=None, background=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """``rgb * alpha + background * (1 - alpha)``: straight-alpha images over a background, ``[...,H,W,3]``.

    ``rgb`` is ``[...,H,W,3]`` with ``alpha [...,H,W,1]``, or ``[...,H,W,4]`` RGBA with ``alpha=None``;
    ``background`` is a scalar, an RGB triple or images ``[...,H,W,3]`` (default white, as NeRF-synthetic
    evaluations use).

    Example:
        >>> rgba = torch.tensor([[[[0.2, 0.4, 0.6, 0.5]]]])
        >>> [round(x, 4) for x in composite(rgba).flatten().tolist()]
        [0.6, 0.7, 0.8]
    """
    rgb = _images("rgb", rgb)
    if alpha is None:
        if rgb.shape[-1] != 4:
            raise InputError(f"rgb must be RGBA [...,H,W,4] when alpha is None; got {tuple(rgb.shape)}.")
        rgb, alpha = rgb[..., :3], rgb[..., 3:]
    alpha = float_tensor("alpha", alpha, "[...,H,W,1]").to(rgb.device, rgb.dtype)
    if alpha.shape[-1] != 1:
        alpha = alpha.unsqueeze(-1)
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return rgb * alpha + bg * (1 - alpha)

