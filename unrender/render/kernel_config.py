"""Settings shared by the compiled (numba) CPU kernels.

numba's ``parallel=True`` lowers each ``prange`` loop into a threaded gufunc. On two idle cores it
makes a full 512^2 differentiable frame ~1.4x faster, and compiling costs about twice as long as a
serial kernel (seconds per kernel and argument signature, once: compiled kernels are cached on
disk). On a heavily loaded machine parallel compilation can take minutes; set
``UNRENDER_NUMBA_PARALLEL=0`` there to compile serial kernels instead.
"""

import os

from ..errors import InputError

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


def resolve_backend(backend: str, compiled_available: bool, device_type: str) -> str:
    """``"numba"`` or ``"torch"`` for an op's ``backend`` argument (``"auto"``, ``"numba"`` or ``"torch"``): ``auto``
    picks the compiled kernel when it imported and the tensors are on the CPU; an explicit ``numba`` that cannot
    run raises :class:`~unrender.errors.InputError`.

    Example:
        >>> resolve_backend("auto", True, "cuda")
        'torch'
    """
    if backend not in ("auto", "numba", "torch"):
        raise InputError(f"backend must be 'auto', 'numba' or 'torch'; got {backend!r}.")
    runnable = compiled_available and device_type == "cpu"
    if backend == "auto":
        return "numba" if runnable else "torch"
    if backend == "numba" and not runnable:
        raise InputError("backend='numba' needs numba and CPU tensors; use backend='torch' for other devices.")
    return backend
