"""Data-parallel training and sharded work on PyTorch's own engine (torch.distributed + DDP, launched by torchrun).

Nothing here is a home-made engine: process groups, collectives and gradient
averaging are `torch.distributed` and `DistributedDataParallel`. This module is
the thin layer that lets the one training loop (train/loop.py) and the feature
extractor (models/features.py) run unchanged in one process and under
`torchrun --nproc_per_node=N`. The loop's distributed lines:

    ctx = DistContext.from_env()              # rank, world size: torchrun's env (else rank 0 of 1, a no-op)
    run, cfg = ctx.on_main(RunDir.open, ...)  # rank 0 does it, every rank gets the result (or its exception)
    device = ctx.device_for(device)           # cuda -> cuda:LOCAL_RANK
    step = ctx.data_parallel(fn, modules)     # fn(batch, ...) on this rank's shard of the batch, through DDP
    stats = ctx.reduce_epoch_stats(stats)     # epoch statistics reduced across ranks
    master = ctx.is_main                      # rank 0 writes the run directory and prints
    ctx.shard(indices)                        # this rank's share of a work list (feature chunks)
    ctx.barrier()

Semantics (why a distributed run is the same run as a single-process one):

* Every rank draws the SAME global batch from (seed, epoch) (batches.py: the
  order and negatives are pure functions of them), then keeps a contiguous
  block of its rows. The global batch is `data.batch_size` whatever the number
  of ranks, so the learning rate keeps its meaning.
* Each rank's loss terms are multiplied by n_local * world / n_global. DDP
  averages gradients over ranks, so the gradient is exactly the gradient of
  the global batch's mean loss, also for a last batch that does not split
  evenly. A rank whose share is empty (a last batch with fewer rows than
  ranks) runs one padding row with weight 0, so it still joins DDP's
  all-reduce; what that call returns besides its loss terms is discarded.
* Parameters start equal (seeded; DDP also broadcasts rank 0's at wrap time),
  gradients are averaged, gradient clipping sees the averaged gradient, so the
  optimizers stay in lockstep. Validation and the final evaluation run on
  rank 0 and their results are broadcast, so early stopping decides the same
  everywhere; run-directory writes (checkpoints, history, metrics, TensorBoard)
  happen on rank 0 only. The resume state holds nothing per rank, so a run
  resumes on any number of ranks.
* Terms that are means over examples (softmax, FND, KD, MSE, RD, within-outfit
  NT-Xent) are reproduced exactly up to float round-off. The anchor
  regulariser is a mean over the batch's distinct users and `contrastive.scope:
  batch` contrasts across the step's outfits: both are computed per shard (a
  weighted mean of per-shard values), and dropout / augmentation draws differ
  from one process: such runs are statistically, not bitwise, equivalent.

DDP needs every parameter either used in each step or declared possibly
unused: the projection head (contrastive) and id-encoder embeddings are not
always used, so the wrapper sets `find_unused_parameters=True` (a cheap graph
walk for these small models). Buffers are not broadcast each step
(`broadcast_buffers=False`): the model has no running statistics, and its
buffers hold the catalogue's images, identical everywhere.

Backends: gloo on CPU; "cpu:gloo,cuda:nccl" when CUDA is available (NCCL for
the gradients, gloo for the small CPU collectives). Mixed precision: the
environment variable OUTFITREC_AMP=bf16 runs each training step under
`torch.autocast(dtype=bfloat16)` on the step's device (meant for GPUs; on a
CPU it works but is usually slower).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import gc
import inspect
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from outfitrec.data.outfits import DataError

ENV_BACKEND = "OUTFITREC_DIST_BACKEND"
ENV_AMP = "OUTFITREC_AMP"
ENV_TIMEOUT = "OUTFITREC_DIST_TIMEOUT_S"
AMP_CHOICES = ("none", "bf16")

T = TypeVar("T")
# a training step: (batch, *args) -> ({term: scalar loss tensor}, anything else it reports, e.g. flag counts)
StepFn = Callable[..., tuple[dict[str, torch.Tensor], Any]]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DataError(f"environment: {name}={raw!r} is not an integer") from None


def default_backend() -> str:
    """gloo on CPU-only machines; NCCL for CUDA tensors plus gloo for CPU ones when a GPU is present."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def amp_mode() -> str:
    """The mixed-precision mode requested through OUTFITREC_AMP (none or bf16)."""
    mode = os.environ.get(ENV_AMP, "none").strip().lower() or "none"
    if mode not in AMP_CHOICES:
        raise DataError(f"environment: {ENV_AMP}={mode!r}; expected one of {', '.join(AMP_CHOICES)}")
    return mode


@dataclasses.dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) job, and the hooks the loop calls.

    A context with world_size 1 is a no-op: every hook falls back to exactly
    what a plain single-process run does, so the loop keeps one code path.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    amp: str = "none"
    owns_group: bool = False

    # ------------------------------------------------------------------ creation

    @classmethod
    def single(cls) -> DistContext:
        """The one-process context (no process group)."""
        return cls(amp=amp_mode())

    @classmethod
    def from_env(cls) -> DistContext:
        """The context of this process, from torchrun's RANK / WORLD_SIZE / LOCAL_RANK (MASTER_ADDR/PORT).

        Joins (initialises once) the default process group when WORLD_SIZE > 1;
        reuses it when the caller already initialised one. Without torchrun's
        variables this is `single()`.
        """
        amp = amp_mode()
        if dist.is_available() and dist.is_initialized():
            return cls(
                dist.get_rank(),
                dist.get_world_size(),
                _env_int("LOCAL_RANK", 0),
                dist.get_backend(),
                amp,
                owns_group=False,
            )
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return cls(amp=amp)
        if not dist.is_available():
            raise DataError("distributed: WORLD_SIZE > 1 but this torch build has no torch.distributed")
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        backend = os.environ.get(ENV_BACKEND) or default_backend()
        if "nccl" in backend and torch.cuda.is_available():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        timeout = timedelta(seconds=_env_int(ENV_TIMEOUT, 1800))
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timeout)
        atexit.register(_destroy_group)
        return cls(rank, world, local_rank, backend, amp, owns_group=True)

    # ------------------------------------------------------------------ facts

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    def device_for(self, requested: torch.device | str) -> torch.device:
        """The device this rank trains on: a CUDA request becomes cuda:LOCAL_RANK; CPU stays CPU."""
        device = torch.device(requested)
        if not self.distributed or device.type != "cuda":
            return device
        if not torch.cuda.is_available():
            raise DataError(f"runtime.device={requested}: CUDA is not available on rank {self.rank}")
        index = self.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)

    @property
    def _collective_device(self) -> torch.device:
        """Where the small tensor collectives run: CPU unless the group is NCCL only."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # ------------------------------------------------------------------ collectives

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of `tensor` over ranks (a new tensor on the input's device)."""
        if not self.distributed:
            return tensor.clone()
        work = tensor.detach().to(self._collective_device, copy=True)
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        return work.to(tensor.device)

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's `obj` on every rank (pickled in memory; only between the job's processes)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on rank 0 only and return its result on every rank.

        An exception on rank 0 is re-raised on every rank (instead of leaving
        the others waiting forever in the next collective).
        """
        if not self.distributed:
            return fn(*args, **kwargs)
        payload: tuple[str, Any] | None = None
        error: BaseException | None = None
        if self.is_main:
            try:
                payload = ("ok", fn(*args, **kwargs))
            except Exception as exc:  # re-raised below, on every rank
                error = exc
                payload = ("error", _picklable_error(exc))
        payload = self.broadcast_object(payload)
        if payload[0] == "error":
            if error is not None:
                raise error
            raise payload[1]
        return payload[1]

    # ------------------------------------------------------------------ sharding

    def shard(self, items: Sequence[T] | Iterable[T]) -> list[T]:
        """This rank's share of a work list: elements rank, rank + world, ... (stable, timing-independent)."""
        items = list(items)
        return items[self.rank :: self.world_size]

    def row_range(self, n: int) -> tuple[int, int]:
        """This rank's contiguous block [start, stop) of n rows (sizes differ by at most one)."""
        # numpy.array_split's boundaries: the first n % world blocks get one more row
        q, r = divmod(n, self.world_size)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (1 if self.rank < r else 0)

    def shard_batch(self, batch: T) -> tuple[T, float, bool]:
        """(this rank's rows of `batch`, loss weight, padding?) for a dataclass of row-aligned arrays.

        Every numpy array / tensor field whose first dimension is the batch size
        is sliced; other fields (n_rec, ...) are kept. The weight n_local *
        world / n_global makes DDP's gradient average equal the global batch
        mean. An empty share becomes one padding row (row 0) with weight 0.
        """
        n = len(batch)  # type: ignore[arg-type]
        if not self.distributed:
            return batch, 1.0, False
        start, stop = self.row_range(n)
        padding = stop <= start
        rows = slice(0, 1) if padding else slice(start, stop)
        changes = {}
        for f in dataclasses.fields(batch):  # type: ignore[arg-type]
            value = getattr(batch, f.name)
            if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim and value.shape[0] == n:
                changes[f.name] = value[rows]
        local = dataclasses.replace(batch, **changes)  # type: ignore[type-var]
        weight = 0.0 if padding else (stop - start) * self.world_size / n
        return local, weight, padding

    # ------------------------------------------------------------------ training hooks

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on `device` when OUTFITREC_AMP=bf16, else a no-op."""
        if self.amp == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def data_parallel(self, step_fn: StepFn, modules: Sequence[nn.Module | None]) -> DataParallelStep:
        """Wrap one training step `step_fn(batch, *args) -> ({term: scalar loss tensor}, extra)` for this job.

        `modules` are the trained modules the step uses (None entries skipped);
        they are registered with one DDP instance, which averages their
        gradients during backward. In a single process the step runs as is
        (only autocast applies when requested).
        """
        return DataParallelStep(self, step_fn, [m for m in modules if m is not None])

    def reduce_epoch_stats(self, stats: Any) -> Any:
        """Reduce the loop's EpochStats across ranks, in place: global means, summed counts, gathered flags.

        `stats.sums` holds per-step sums of the weighted shard terms, so their
        sum over ranks / world is the sum of global-batch means; `flagged` and
        `negatives_scored` are counts (summed); `flag_outfits` / `flag_values`
        (per-negative false-negative flags) are gathered in rank order.
        """
        if not self.distributed:
            return stats
        keys = sorted(stats.sums)
        all_keys = self.all_gather_object(keys)
        if any(k != keys for k in all_keys):
            raise RuntimeError(f"distributed: ranks logged different loss terms: {all_keys}")
        values = [stats.sums[k] for k in keys] + [float(stats.flagged), float(stats.negatives_scored)]
        total = self.all_reduce_sum(torch.tensor(values, dtype=torch.float64))
        stats.sums = {k: float(total[i]) / self.world_size for i, k in enumerate(keys)}
        stats.flagged = int(round(float(total[len(keys)])))
        stats.negatives_scored = int(round(float(total[len(keys) + 1])))
        if hasattr(stats, "flag_outfits"):
            gathered = self.all_gather_object((stats.flag_outfits, stats.flag_values))
            stats.flag_outfits = [o for outfits, _ in gathered for o in outfits]
            stats.flag_values = [v for _, values in gathered for v in values]
        return stats


class _Stepper(nn.Module):
    """The trained modules under one nn.Module, so DDP sees their parameters; forward runs a closure.

    The step calls the modules' own methods (encode_items, encode_outfits,
    score_embeddings, the head); running it inside DDP's forward is what lets
    DDP prepare its reducer and find the parameters a step did not use.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)

    def forward(self, closure: Callable[[], Any]) -> Any:
        return closure()


class DataParallelStep:
    """Callable `(batch, *args) -> (weighted loss terms, extra)` of this rank's shard; see DistContext.data_parallel."""

    def __init__(self, ctx: DistContext, step_fn: StepFn, modules: list[nn.Module]):
        self.ctx = ctx
        # a bound method of the loop's trainer, which owns this step: held weakly so that trainer -> step ->
        # trainer is no reference cycle and the DDP instance dies with the trainer (see _destroy_group)
        self._step_ref: Callable[[], StepFn | None] = (
            weakref.WeakMethod(step_fn) if inspect.ismethod(step_fn) else lambda: step_fn
        )
        self.modules = modules
        params = [p for m in modules for p in m.parameters()]
        self.device = params[0].device if params else torch.device("cpu")
        self.ddp: DistributedDataParallel | None = None
        if ctx.distributed and any(p.requires_grad for p in params):
            self.ddp = DistributedDataParallel(
                _Stepper(modules),
                device_ids=None,  # the step moves its own tensors; inputs are not touched
                find_unused_parameters=True,
                broadcast_buffers=False,
            )

    @property
    def step_fn(self) -> StepFn:
        fn = self._step_ref()
        if fn is None:
            raise RuntimeError("distributed: the step's owner was freed before the step was called")
        return fn

    def __call__(self, batch: Any, *args: Any) -> tuple[dict[str, torch.Tensor], Any]:
        """(the step's loss terms of this rank's shard, weighted; what else it returned, None for a padding row)."""
        local, weight, padding = self.ctx.shard_batch(batch)
        closure = functools.partial(self.step_fn, local, *args)
        with self.ctx.autocast(self.device):
            terms, extra = self.ddp(closure) if self.ddp is not None else closure()
        if weight != 1.0:
            terms = {k: v * weight for k, v in terms.items()}
        return terms, None if padding else extra


def _picklable_error(exc: BaseException) -> BaseException:
    """The exception itself when it pickles (DataError, ConfigError, ...), else a RuntimeError with its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"rank 0: {type(exc).__name__}: {exc}")


def _destroy_group() -> None:
    """Tear the process group down at exit, after everything that still holds it.

    DDP's reducer keeps its own reference to the process group, so
    destroy_process_group() only unregisters the group while a DDP instance
    lives; the group (and gloo's worker threads) then dies with the reducer.
    A DDP left in a reference cycle is freed only by the garbage collector at
    interpreter finalisation, when destroying the group's threads can end in
    "terminate called without an active exception" (SIGABRT, exit -6; seen on
    rank 1 under load). Collecting first frees every unreachable DDP while
    the interpreter is whole; DataParallelStep also avoids the usual cycle.
    """
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


__all__ = ["DistContext", "DataParallelStep", "default_backend", "amp_mode", "ENV_AMP", "ENV_BACKEND"]
