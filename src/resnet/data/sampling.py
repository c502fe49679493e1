"""Which examples each process sees, and when. One rule for in-memory and file-based sets:

- every epoch is a seeded permutation of the training set, identical on every process;
- step k of an epoch consumes the k-th *global* batch of that permutation, and process r takes the r-th slice of it,
  so a run's data order depends only on (seed, epoch, step) and the global batch, not on the number of processes;
- evaluation shards the set by stride (r, r + world, ...) without padding, so each example is counted exactly once.
"""

from __future__ import annotations

import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def step_seed(seed: int, epoch: int, step: int) -> int:
    """Seed of the random augmentation of one global batch: reproducible from (seed, epoch, step) alone."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + step + 1


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Full global batches per epoch (the ragged tail is dropped, as every process must take the same steps)."""
    return n // (batch_size * world)


def train_indices(perm: torch.Tensor, step: int, batch_size: int, rank: int, world: int) -> torch.Tensor:
    start = (step * world + rank) * batch_size
    return perm[start:start + batch_size]


def eval_indices(n: int, rank: int, world: int) -> torch.Tensor:
    return torch.arange(rank, n, world)
