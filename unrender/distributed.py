"""Data-parallel training across processes (``torchrun``): process group, DDP wrapping, sharded sampling.

Launched as ``torchrun --nproc_per_node=N -m ...`` every process runs the same training script; torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. This module turns those
into a :class:`DistributedContext`:

* the process group uses **nccl** when the processes train on CUDA GPUs (one GPU each, ``cuda:LOCAL_RANK``)
  and **gloo** on CPUs;
* every process builds the model from the same seed, and :func:`wrap_model` wraps it in
  ``DistributedDataParallel``, which also broadcasts rank 0's weights at construction and averages the
  gradients in every backward pass -- so all ranks hold identical weights after every step;
* :func:`shard_sampler` gives each rank a disjoint ``1/N`` of every epoch's shuffled samples
  (``DistributedSampler``, the same permutation on every rank for a given seed and epoch);
* only rank 0 writes files (:attr:`DistributedContext.is_main`); :func:`barrier` orders the others after it.

Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) everything degrades to a single process: no
process group, the model unwrapped, the sampler covering the whole dataset.

Example:
    >>> ctx = init_distributed("cpu", env={})
    >>> ctx.world_size, ctx.is_main, ctx.backend
    (1, True, None)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from .errors import InputError


@dataclass
class DistributedContext:
    """Where this process stands in a (possibly single-process) training job.

    Attributes:
        rank: global rank ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this process trains on.
        backend: ``"gloo"``, ``"nccl"`` or ``None`` (single process).
        owns_group: this context created the process group (and :func:`shutdown` destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when gradients are synchronised across more than one process."""
        return self.backend is not None


def _env_int(env, key: str, default: int) -> int:
    value = env.get(key, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {key}={value!r} must be an integer (set by torchrun); unset it "
                         f"or launch with torchrun.") from None


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:local_rank`` when CUDA is available, else CPU; ``cuda`` without a GPU raises.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    if name not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda; got {name!r}.")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu.")
    if local_rank >= torch.cuda.device_count():
        raise InputError(f"LOCAL_RANK {local_rank} has no GPU (torch sees {torch.cuda.device_count()}); start at "
                         f"most that many processes per node.")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto", env=None, timeout_minutes: float = 30.0) -> DistributedContext:
    """Read torchrun's environment and join the process group (module docstring).

    ``WORLD_SIZE > 1`` initialises ``torch.distributed`` (rendezvous at ``MASTER_ADDR:MASTER_PORT``, through
    torchrun's store when it hosts one), backend nccl on CUDA and gloo on CPU, unless a group is already
    initialised (then it is reused and left alone by :func:`shutdown`).

    Args:
        device: ``auto``, ``cpu`` or ``cuda`` (each process takes ``cuda:LOCAL_RANK``).
        env: mapping to read instead of ``os.environ`` (tests).
        timeout_minutes: how long collective operations wait for a missing rank.
    Returns:
        :class:`DistributedContext`.

    Example:
        >>> init_distributed("cpu", env={"WORLD_SIZE": "1"}).distributed
        False
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} and WORLD_SIZE={world} are inconsistent; launch with torchrun.")
    dev = pick_device(device, local)
    if world == 1:
        return DistributedContext(0, 1, 0, dev, None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), local, dev, dist.get_backend())
    from datetime import timedelta

    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(key):
            raise InputError(f"WORLD_SIZE={world} but {key} is not set; launch with torchrun, which sets it.")
    # env:// lets torchrun's agent host the rendezvous store (TORCHELASTIC_USE_AGENT_STORE); an explicit
    # mapping (tests, custom launchers) gets a plain TCP rendezvous at its MASTER_ADDR:MASTER_PORT.
    init = "env://" if env is os.environ else f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                            timeout=timedelta(minutes=timeout_minutes))
    return DistributedContext(rank, world, local, dev, backend, owns_group=True)


def shutdown(ctx: DistributedContext) -> None:
    """Destroy the process group if ``ctx`` created it (call once training is over)."""
    if ctx.owns_group and dist.is_initialized():
        import gc

        gc.collect()  # a DDP wrapper freed after the group is gone aborts the process (gloo teardown)
        dist.barrier()  # nobody tears down its gloo pairs while a peer still talks to them
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model``; ``model`` must be on ``ctx.device``.

    DDP broadcasts rank 0's parameters and buffers at construction and all-reduces (averages) gradients
    during ``backward``. Buffers are not re-broadcast every step: the single-view models' buffers are constant
    (template mesh, projection base; GroupNorm keeps no running statistics). ``find_unused_parameters`` must be
    True when a loss weight of 0 leaves a head out of the graph.

    Example:
        >>> ctx = init_distributed("cpu", env={})
        >>> wrap_model(nn.Linear(2, 2), ctx)
        Linear(in_features=2, out_features=2, bias=True)
    """
    if not ctx.distributed:
        return model
    import inspect

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # Newer torch renames the per-step buffer broadcast (and warns about the old name).
    sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
            else "broadcast_buffers")
    return ddp(model, device_ids=ids, find_unused_parameters=find_unused_parameters, **{sync: False})


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard_sampler(dataset, ctx: DistributedContext, shuffle: bool, seed: int) -> DistributedSampler:
    """``DistributedSampler`` giving rank ``r`` the samples ``perm[r::N]`` of each epoch's permutation.

    ``perm`` depends on ``(seed, epoch)`` only (call ``set_epoch``); the last ranks repeat a few samples when
    ``len(dataset)`` is not a multiple of ``N``, so every rank takes the same number of steps.

    Example:
        >>> s = shard_sampler(list(range(5)), init_distributed("cpu", env={}), shuffle=False, seed=0)
        >>> list(s)
        [0, 1, 2, 3, 4]
    """
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed,
                              drop_last=False)


def barrier(ctx: DistributedContext) -> None:
    """Wait until every rank reaches this point (no-op in a single process)."""
    if ctx.distributed:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def any_rank(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank when ``flag`` is True on at least one (e.g. "my time budget ran out").

    Ranks measure time separately; agreeing on the decision keeps them from waiting for each other forever.
    """
    return max_over_ranks(1.0 if flag else 0.0, ctx) > 0


def max_over_ranks(value: float, ctx: DistributedContext) -> float:
    """The largest ``value`` over all ranks (e.g. the elapsed time that a time-based schedule follows)."""
    return _all_reduce([value], dist.ReduceOp.MAX, ctx)[0] if ctx.distributed else float(value)


def sum_over_ranks(values: list[float], ctx: DistributedContext) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (for epoch means of per-rank loss sums)."""
    return _all_reduce(values, dist.ReduceOp.SUM, ctx) if ctx.distributed else [float(v) for v in values]


def _all_reduce(values: list[float], op, ctx: DistributedContext) -> list[float]:
    """``values`` reduced over all ranks by ``op`` (float64 on gloo, float32 on nccl)."""
    t = torch.tensor(values, dtype=torch.float64 if ctx.backend == "gloo" else torch.float32, device=ctx.device)
    dist.all_reduce(t, op=op)
    return [float(v) for v in t.tolist()]


def broadcast_error(error: Exception | None, ctx: DistributedContext) -> None:
    """Raise on every rank if rank 0 hit ``error`` in a rank-0-only section (others pass ``None``).

    Rank 0 prepares the run folder alone; if that fails the other ranks would otherwise wait at the next
    collective forever.
    """
    if not ctx.distributed:
        if error is not None:
            raise error
        return
    box = [None if error is None else (type(error).__name__, str(error))]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.backend == "nccl" else None)
    if error is not None:
        raise error
    if box[0] is not None:
        from .errors import DataError

        kind, message = box[0]
        raise (InputError if kind == "InputError" else DataError)(message)
