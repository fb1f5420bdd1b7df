"""Which examples each process sees at each optimizer step: a pure function of (seed, step).

Every epoch is a seeded permutation of all examples. Optimizer step k of an epoch takes the slice
[k*G, (k+1)*G) of it, G = batch_size * grad_accum * world_size; process r takes every world_size-th item of
the slice, cut into micro-batches. So the examples in a global step do not depend on how many processes
share it (one process with grad_accum 2 sees what two processes with grad_accum 1 see), and resuming at
step k needs no replay of earlier batches.

With `lengths` (data.group_by_length) each run of LENGTH_GROUP global batches of the permutation is sorted
by length, cut into batches, and those batches are shuffled: a batch holds rows of similar length, so little
of it is padding, while which rows meet in a batch stays random from epoch to epoch (as Hugging Face's
length-grouped sampler does).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

LENGTH_GROUP = 50  # global batches sorted together by group_by_length


@dataclass(frozen=True)
class BatchPlan:
    num_examples: int
    batch_size: int
    grad_accum: int
    world_size: int = 1
    rank: int = 0
    seed: int = 0
    lengths: Sequence[int] | None = None  # one per example: batch rows of similar length together

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError("no training examples")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    @property
    def padded_size(self) -> int:
        """Epoch length rounded up to a multiple of world_size: the first rows repeat to fill the gap."""
        return math.ceil(self.num_examples / self.world_size) * self.world_size

    @property
    def repeated_per_epoch(self) -> int:
        return self.padded_size - self.num_examples

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.padded_size / self.global_batch)

    def total_steps(self, epochs: float, max_steps: int | None) -> int:
        return max_steps if max_steps is not None else max(1, math.ceil(epochs * self.steps_per_epoch))

    def epoch_order(self, epoch: int) -> list[int]:
        order = list(range(self.num_examples))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(order)
        order += order[: self.repeated_per_epoch]
        return order if self.lengths is None else self._grouped_by_length(order, rng)

    def _grouped_by_length(self, order: list[int], rng: random.Random) -> list[int]:
        size, grouped = self.global_batch, []
        for start in range(0, len(order), size * LENGTH_GROUP):
            run = sorted(order[start : start + size * LENGTH_GROUP], key=lambda i: self.lengths[i])
            batches = [run[i : i + size] for i in range(0, len(run), size)]
            full = [b for b in batches if len(b) == size]
            rng.shuffle(full)  # a short last batch stays last, so every later step keeps its slice
            grouped += [i for batch in full + batches[len(full):] for i in batch]
        return grouped

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices for this process at optimizer step `step`, one list per micro-batch."""
        epoch, k = divmod(step, self.steps_per_epoch)
        window = self.epoch_order(epoch)[k * self.global_batch : (k + 1) * self.global_batch]
        mine = window[self.rank :: self.world_size]
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
