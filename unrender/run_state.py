"""What every long job (multi-view reconstruction, single-view training) needs to survive a kill and resume:
atomic file writes and a wall clock that keeps counting across resumes.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_torch_save({"step": 3}, d / "ckpt" / "last.pt")
    >>> torch.load(d / "ckpt" / "last.pt")["step"]
    3
    >>> RunClock(before=60.0).elapsed >= 60.0
    True
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def atomic_torch_save(obj, path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder (created if missing) and a rename,
    so that a kill mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def atomic_write_text(text: str, path) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename (see :func:`atomic_torch_save`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class RunClock:
    """Wall time of a job across resumes: :attr:`elapsed` = ``before`` (seconds of earlier runs, from the
    checkpoint) + the time since this clock was made."""

    def __init__(self, before: float = 0.0):
        self.start, self.before = time.perf_counter(), float(before)

    @property
    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start
