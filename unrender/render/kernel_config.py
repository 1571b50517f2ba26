"""Settings shared by the compiled (numba) CPU kernels.

numba's ``parallel=True`` lowers each ``prange`` loop into a threaded gufunc, and compiling one
such kernel takes tens of seconds on a 2-core machine, again for every new argument signature
(float32/float64, shared/batched inputs). That first-call cost outweighs the ~1.5x it buys on two
cores, so the kernels compile serially by default; set ``UNRENDER_NUMBA_PARALLEL=1`` to opt in
(compiled kernels are cached on disk either way).
"""

import os

PARALLEL = os.environ.get("UNRENDER_NUMBA_PARALLEL", "0") == "1"


def worker_count() -> int:
    """Threads a parallel kernel will use: numba's pool size when :data:`PARALLEL`, else 1.

    Kernels that give each worker its own accumulation buffer size those buffers by this, so serial
    kernels do not pay for zeroing and summing copies that no thread fills.
    """
    if not PARALLEL:
        return 1
    import numba

    return max(1, numba.get_num_threads())
