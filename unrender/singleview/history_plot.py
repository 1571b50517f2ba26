"""``metrics.png`` of a training run: validation metrics (and the training loss) against the epoch.

One panel per quantity: ``loss`` (training and validation together), then every other ``val_*`` metric of
the records. Drawn with matplotlib when it is installed, else with a small Pillow line plot (axes, four
labelled y ticks, first/last epoch on x, one polyline per series), so that the file exists on every install.

Example:
    >>> import tempfile, pathlib
    >>> recs = [{"epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "val_iou": 0.3},
    ...         {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "val_iou": 0.6}]
    >>> p = plot_history(recs, pathlib.Path(tempfile.mkdtemp()) / "m.png", use_matplotlib=False)
    >>> p.stat().st_size > 0
    True
"""

from __future__ import annotations

import math
from pathlib import Path

_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def history_panels(records: list[dict]) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """``[(panel title, {series name: [(epoch, value), ...]})]`` from the history records (module docstring).

    Example:
        >>> history_panels([{"epoch": 1, "train_loss": 2.0, "val_loss": 3.0, "val_iou": 0.5}])[1]
        ('iou', {'val': [(1.0, 0.5)]})
    """
    def series(key):
        return [(float(r["epoch"]), float(r[key])) for r in records
                if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key]))]

    panels = [("loss", {name: pts for name, key in (("train", "train_loss"), ("val", "val_loss"))
                        if (pts := series(key))})]
    metrics = sorted({k for r in records for k in r if k.startswith("val_") and k != "val_loss"
                      and isinstance(r[k], (int, float))})
    panels += [(k[4:], {"val": series(k)}) for k in metrics]
    return [p for p in panels if p[1]]


def _pil_panel(title: str, series: dict, width: int = 360, height: int = 240):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 58, width - 12, 24, height - 30
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        pad = abs(y0) * 0.05 or 0.05
        y0, y1 = y0 - pad, y1 + pad

    def to_px(x, y):
        return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    for i in range(4):
        y = y0 + (y1 - y0) * i / 3
        py = to_px(x0, y)[1]
        draw.line([left, py, right, py], fill=(225, 225, 225))
        draw.text((4, py - 6), f"{y:.4g}", fill=(0, 0, 0))
    draw.text((left, bottom + 6), f"{x0:g}", fill=(0, 0, 0))
    draw.text((right - 30, bottom + 6), f"{x1:g}", fill=(0, 0, 0))
    draw.text(((left + right) // 2 - 16, bottom + 14), "epoch", fill=(0, 0, 0))
    draw.text((left, 6), title, fill=(0, 0, 0))
    for k, (name, pts) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        px = [to_px(x, y) for x, y in pts]
        if len(px) > 1:
            draw.line(px, fill=color, width=2)
        for x, y in px:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        draw.text((right - 60, top + 4 + 12 * k), name, fill=color)
    return img


def plot_history(records: list[dict], path, title: str = "", use_matplotlib: bool | None = None) -> Path:
    """Write the panels of :func:`history_panels` side by side to ``path`` (PNG) and return it.

    Args:
        records: history records with ``epoch`` and ``train_loss`` / ``val_*`` numbers.
        path: output PNG (written via a temporary file and a rename).
        title: figure title (matplotlib only).
        use_matplotlib: force one backend (None: matplotlib when importable).
    """
    path = Path(path)
    panels = history_panels(records) or [("loss", {"none": [(0.0, 0.0)]})]
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if use_matplotlib is None:
        import importlib.util

        use_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if use_matplotlib:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
        for ax, (name, series) in zip(axes[0], panels):
            for label, pts in series.items():
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, label=label)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
    else:
        from PIL import Image

        tiles = [_pil_panel(name, series) for name, series in panels]
        sheet = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height), "white")
        x = 0
        for t in tiles:
            sheet.paste(t, (x, 0))
            x += t.width
        sheet.save(tmp, format="PNG")
    tmp.replace(path)
    return path
