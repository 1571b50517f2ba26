"""CPU allocator tuning for long render/optimisation loops (opt-in, process-wide).

glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MiB) with fresh ``mmap``
pages and gives them back on ``free``; it also trims the heap top back to the OS. A differentiable
frame allocates and frees the same large buffers every step (gradient tables of 1024^2 mip stacks,
per-thread scatter copies, [B,H,W,C] images), so each step pays the kernel's page faults again:
about 0.27 ms per MiB on the 2-core CI machine, ~30 ms of a 512^2 frame. Raising both thresholds
keeps freed pages in the process for reuse, which is what PyTorch's CPU performance guide gets by
preloading jemalloc or tcmalloc. Peak memory is unchanged (the pages were needed at the peak
anyway); memory is just not handed back between steps.

The CLI calls :func:`retain_freed_memory` once at start-up; library users opt in themselves. Set
``UNRENDER_RETAIN_MEMORY=0`` to leave the allocator alone. A no-op where ``mallopt`` does not exist
(macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(limit_bytes: int = 1 << 28) -> bool:
    """Keep freed blocks up to ``limit_bytes`` in the process (glibc ``mallopt``); True if applied.

    Example:
        >>> isinstance(retain_freed_memory(), bool)
        True
    """
    if os.environ.get("UNRENDER_RETAIN_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        return False
    limit = int(min(max(limit_bytes, 1 << 20), (1 << 31) - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
