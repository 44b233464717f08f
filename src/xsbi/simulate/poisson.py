"""Seeded, reproducible, multi-threaded Poisson sampling of count spectra.

``torch.poisson`` runs on one CPU thread.  Rows are cut into fixed blocks, each with its own
generator seeded from (seed, block index) through numpy's SeedSequence, and blocks run in a
thread pool (torch releases the GIL).  The realisations therefore depend only on the seed, not on
the chunking or the number of threads.
"""

from __future__ import annotations

import atexit
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


_POOL: ThreadPoolExecutor | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool, re-created when the number of torch threads changes."""
    global _POOL
    if _POOL is None or _POOL._max_workers != workers:
        if _POOL is not None:
            _POOL.shutdown(wait=True)
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="xsbi-poisson")
        atexit.register(_POOL.shutdown)
    return _POOL


class PoissonSampler:
    #: rows per independently seeded block
    block = 256

    def __init__(self, seed, device="cpu"):
        self.seed_sequence = np.random.SeedSequence(seed)
        #: the integer entropy, to record a run started without an explicit seed
        self.seed = self.seed_sequence.entropy
        self.device = torch.device(device)
        if self.device.type != "cpu":
            self._gpu_gen = torch.Generator(device=self.device)
            self._gpu_gen.manual_seed(int(self.seed_sequence.generate_state(1, np.uint64)[0] >> 1))

    def _block_generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence(self.seed_sequence.entropy, spawn_key=(index,)).generate_state(1, np.uint64)
        g = torch.Generator()
        g.manual_seed(int(state[0] >> 1))
        return g

    def __call__(self, mu: torch.Tensor, first_row: int) -> torch.Tensor:
        """Poisson draws for ``mu`` whose first row is row ``first_row`` of the whole batch."""
        if self.device.type != "cpu":
            return torch.poisson(mu, generator=self._gpu_gen)
        if first_row % self.block:
            raise ValueError("chunks must start on a Poisson block boundary")
        out = torch.empty_like(mu)
        starts = range(0, mu.shape[0], self.block)

        def draw(s):
            g = self._block_generator((first_row + s) // self.block)
            out[s : s + self.block] = torch.poisson(mu[s : s + self.block], generator=g)

        workers = torch.get_num_threads()
        if workers > 1 and len(starts) > 1:
            list(_pool(workers).map(draw, starts))
        else:
            for s in starts:
                draw(s)
        return out
