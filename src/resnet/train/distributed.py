"""Multi-process training through torchrun: process-group set-up (gloo on CPU, NCCL on CUDA) and the collectives
the loop needs. With one process every helper is a no-op, so the same code runs everywhere."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.distributed.run import get_args_parser, run


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def elastic_restart() -> bool:
    """True when torchrun (--max-restarts) restarted the worker group after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def launch(nproc: int, argv: list[str]) -> int:
    """``resnet train --nproc N ...``: run ``python -m resnet <argv>`` in N processes through torch.distributed.run
    (torchrun), on this machine, and return its exit status."""
    args = get_args_parser().parse_args(["--nproc-per-node", str(nproc), "--standalone", "-m", "resnet", *argv])
    try:
        run(args)
    except Exception as exc:  # a worker failed: torchrun has already printed its error
        return getattr(exc, "exit_code", 1) or 1
    return 0


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group torchrun describes in the environment; a single process needs nothing."""
    if not launched_by_torchrun():
        return DistEnv()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group(backend=backend, store=_attempt_store(rank, world), rank=rank, world_size=world)
    env = DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(env.local_rank)
    return env


def _attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store torchrun names (MASTER_ADDR:MASTER_PORT), with keys prefixed by the restart attempt.

    torchrun's agent keeps one store for the whole job, so after ``--max-restarts`` restarts a group the workers'
    keys of the failed attempt are still there; without the prefix a new worker can read the address of the worker
    it replaced and fail to connect (seen as "Gloo connectFullMesh failed ... Connection refused").
    """
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent_hosts_store)
    return dist.PrefixStore(f"resnet/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def device_for(env: DistEnv, device: torch.device) -> torch.device:
    """One GPU per process (LOCAL_RANK) when training on CUDA."""
    if device.type == "cuda" and env.enabled and device.index is None:
        return torch.device("cuda", env.local_rank)
    return device


def _several_processes() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place (and returned); identity with one process."""
    if _several_processes():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (e.g. a stop signal that reached one process only)."""
    if _several_processes():
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


def barrier() -> None:
    if _several_processes():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all processes, on CPU (gloo), where
    torch.nn.SyncBatchNorm does not run. Sums are reduced in float64 with a differentiable all-reduce, so the
    gradient flows through the shared statistics exactly as in one process with the whole batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _several_processes()):
            return super().forward(x)
        c = x.shape[1]
        xd = x.double()
        local = torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)),
                           torch.tensor([x.numel() / c], dtype=torch.float64, device=x.device)])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        inv = torch.rsqrt(var + self.eps)
        scale, shift = inv, -mean * inv
        if self.affine:
            scale, shift = scale * self.weight.double(), shift * self.weight.double() + self.bias.double()
        out = xd * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)
        return out.to(x.dtype).contiguous(memory_format=torch.channels_last
                                          if x.is_contiguous(memory_format=torch.channels_last) and not
                                          x.is_contiguous() else torch.contiguous_format)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Global-batch BN statistics: torch's SyncBatchNorm on CUDA, :class:`CPUSyncBatchNorm` on CPU
    (same parameters and buffers, so state dicts and checkpoints are unchanged)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            sync.to(device=child.weight.device, memory_format=torch.channels_last)
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model


def broadcast_floats(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every process (one decision, e.g. a budget plan, shared by all)."""
    if _several_processes():
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return t.tolist()
    return list(values)
