"""Per-domain validation loss on fixed held-out tokens.

Every run evaluates the same windows of each domain's validation split (see
:func:`bayesmix.proxy.tokenize.eval_windows`), so losses are comparable across
runs, mixtures and sizes that share ``seq_len`` and ``eval_tokens``.
"""

from __future__ import annotations

import numpy as np
import torch

from bayesmix.proxy.runtime import autocast
from bayesmix.proxy.tokenize import TokenCache, eval_windows


class Evaluator:
    """Mean next-token loss (nats per token) of a model on each eval domain."""

    def __init__(self, cache: TokenCache, domains: list[str], *, seq_len: int, eval_tokens: int,
                 batch_size: int, device: torch.device, precision: str):
        self.windows = {d: torch.from_numpy(eval_windows(cache.tokens(d, "valid"), seq_len, eval_tokens)
                                            .astype(np.int64)) for d in domains}
        self.batch_size = max(1, batch_size)
        self.device = device
        self.precision = precision

    @property
    def tokens(self) -> dict[str, int]:
        """Evaluated tokens per domain."""
        return {d: int(w.shape[0] * (w.shape[1] - 1)) for d, w in self.windows.items()}

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            out = {}
            for domain, windows in self.windows.items():
                total = torch.zeros((), dtype=torch.float64, device=self.device)
                for chunk in windows.split(self.batch_size):
                    chunk = chunk.to(self.device)
                    with autocast(self.device, self.precision):
                        loss = model(chunk[:, :-1], chunk[:, 1:])
                    total += loss.double() * chunk[:, 1:].numel()
                out[domain] = float(total.item()) / (windows.shape[0] * (windows.shape[1] - 1))
            return out
        finally:
            model.train(was_training)
