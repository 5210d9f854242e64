"""Mixture-sampled training batches.

Each sequence of a batch comes from a domain drawn with the mixture's
probabilities, at a uniformly drawn offset of that domain's training tokens.
The draw for update ``step`` depends only on ``(seed, step)``, so a resumed run
sees exactly the batches an uninterrupted one would, and runs that share a seed
share their random numbers (common random numbers across mixtures).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bayesmix.proxy.mixtures import MixtureError


class MixtureSampler:
    """Draws ``(batch_size, seq_len + 1)`` token windows for a mixture."""

    def __init__(self, arrays: Mapping[str, np.ndarray], mixture: Mapping[str, float], *,
                 batch_size: int, seq_len: int, seed: int = 0):
        self.domains = list(mixture)
        self.probs = np.array([mixture[d] for d in self.domains], dtype=float)
        self.probs = self.probs / self.probs.sum()
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.arrays = [arrays[d] for d in self.domains]
        short = [f"{d} ({len(a)} tokens)" for d, a, p in zip(self.domains, self.arrays, self.probs)
                 if p > 0 and len(a) < seq_len + 1]
        if short:
            raise MixtureError(f"domain(s) with too little training text for one sequence of {seq_len + 1} "
                               f"tokens: {', '.join(short)}")

    def domain_indices(self, step: int) -> np.ndarray:
        """Index into ``self.domains`` of each sequence of update ``step``."""
        rng = np.random.default_rng([self.seed, step])
        return rng.choice(len(self.domains), size=self.batch_size, p=self.probs)

    def batch(self, step: int) -> np.ndarray:
        """Token windows of update ``step``, shape ``(batch_size, seq_len + 1)``, int64."""
        rng = np.random.default_rng([self.seed, step])
        which = rng.choice(len(self.domains), size=self.batch_size, p=self.probs)
        width = self.seq_len + 1
        out = np.empty((self.batch_size, width), dtype=np.int64)
        for i, j in enumerate(which):
            arr = self.arrays[j]
            start = int(rng.integers(0, len(arr) - width + 1))
            out[i] = arr[start:start + width]
        return out
