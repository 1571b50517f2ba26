"""Settings shared by the compiled (numba) CPU kernels.

numba's ``parallel=True`` lowers each ``prange`` loop into a threaded gufunc. On two idle cores it
makes a full 512^2 differentiable frame ~1.4x faster, and compiling costs about twice as long as a
serial kernel (seconds per kernel and argument signature, once: compiled kernels are cached on
disk). On a heavily loaded machine parallel compilation can take minutes; set
``UNRENDER_NUMBA_PARALLEL=0`` there to compile serial kernels instead.
"""

import os

PARALLEL = os.environ.get("UNRENDER_NUMBA_PARALLEL", "1") != "0"


def worker_count() -> int:
    """Threads a parallel kernel will use: numba's pool size when :data:`PARALLEL`, else 1.

    Kernels that give each worker its own accumulation buffer size those buffers by this, so serial
    kernels do not pay for zeroing and summing copies that no thread fills.
    """
    if not PARALLEL:
        return 1
    import numba

    return max(1, numba.get_num_threads())
