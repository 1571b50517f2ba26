"""Learning-rate schedules shared by the training loops (single-view, many scenes, the latent autoencoder).

Example:
    >>> cosine_decay(0.0, 0.1), cosine_decay(0.5, 0.1), cosine_decay(2.0, 0.1)
    (1.0, 0.55, 0.1)
"""

from __future__ import annotations

import math


def cosine_decay(progress: float, final: float) -> float:
    """Multiplier of a peak learning rate: ``final + (1 - final) (1 + cos(pi p)) / 2`` with ``p`` = ``progress``
    clamped to ``[0, 1]`` (the share of the run done): 1 at the start, ``final`` at the end and after."""
    p = min(max(progress, 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p))
