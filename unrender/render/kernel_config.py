"""Settings shared by the compiled (numba) CPU kernels.

numba's ``parallel=True`` lowers each ``prange`` loop into a threaded gufunc, and compiling one
such kernel takes tens of seconds on a 2-core machine, again for every new argument signature
(float32/float64, shared/batched inputs). That first-call cost outweighs the ~1.5x it buys on two
cores, so the kernels compile serially by default; set ``UNRENDER_NUMBA_PARALLEL=1`` to opt in
(compiled kernels are cached on disk either way).
"""

import os

PARALLEL = os.environ.get("UNRENDER_NUMBA_PARALLEL", "0") == "1"
