"""The proxy model family: a GPT-style decoder defined as data.

Each named size is a row of :data:`SIZES` (layers, width, heads, default peak
learning rate). Blocks are pre-LayerNorm with a fused QKV projection, causal
self-attention and a 4x GELU MLP; linear layers have no bias; the output head
is tied to the token embedding; positions are learned. The non-embedding
parameter count (what the size laws use, Kaplan et al. 2020) is exact::

    N = n_layer * (12 d^2 + 4 d) + 2 d

(QKV 3d^2, output d^2, MLP 8d^2; two LayerNorms of 2d per block; the final
LayerNorm 2d). Token and position embeddings are excluded, and the tied head
adds no parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION = ("fused", "reference")


@dataclass(frozen=True)
class ModelSize:
    """One member of the family. ``lr`` is the default peak learning rate."""

    name: str
    n_layer: int
    d_model: int
    n_head: int
    lr: float
    context: int = 1024
    mlp_ratio: int = 4

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def non_embedding_params(self) -> int:
        d = self.d_model
        per_layer = (4 + 2 * self.mlp_ratio) * d * d + 4 * d
        return self.n_layer * per_layer + 2 * d

    def embedding_params(self, vocab_size: int) -> int:
        return (vocab_size + self.context) * self.d_model

    def flops_per_token(self, seq_len: int, vocab_size: int = 256) -> int:
        """Training FLOPs per token (forward + backward), the PaLM convention.

        ``6 * (N + d * V) + 12 * n_layer * d * seq_len``: matrix products of the
        blocks and of the tied output head, plus attention scores and values
        (counted as if not causal, as PaLM's MFU does).
        """
        d = self.d_model
        return 6 * (self.non_embedding_params + d * vocab_size) + 12 * self.n_layer * d * seq_len

    def as_dict(self) -> dict:
        return {**asdict(self), "non_embedding_params": self.non_embedding_params}


def _size(name, n_layer, d_model, n_head, lr):
    return ModelSize(name=name, n_layer=n_layer, d_model=d_model, n_head=n_head, lr=lr)


#: The family, smallest first. Small sizes train in seconds on a CPU; 21M and up are for a GPU.
SIZES: dict[str, ModelSize] = {s.name: s for s in (
    _size("100k", 2, 64, 2, 3e-3),
    _size("200k", 4, 64, 2, 3e-3),
    _size("450k", 4, 96, 3, 3e-3),
    _size("1.2M", 6, 128, 4, 2e-3),
    _size("2.7M", 6, 192, 3, 2e-3),
    _size("6.3M", 8, 256, 4, 1.5e-3),
    _size("12M", 10, 320, 5, 1.2e-3),
    _size("21M", 12, 384, 6, 1e-3),
    _size("50M", 16, 512, 8, 8e-4),
    _size("85M", 12, 768, 12, 6e-4),
    _size("200M", 16, 1024, 16, 4e-4),
    _size("300M", 24, 1024, 16, 3e-4),
)}


def get_size(size: str | ModelSize) -> ModelSize:
    """Look a size up by name (a :class:`ModelSize` passes through)."""
    if isinstance(size, ModelSize):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; known sizes: {', '.join(SIZES)}")
    return SIZES[size]


def non_embedding_params(size: str | ModelSize) -> int:
    """Exact non-embedding parameter count of a named size."""
    return get_size(size).non_embedding_params


class Block(nn.Module):
    def __init__(self, size: ModelSize, attention: str):
        super().__init__()
        d = size.d_model
        self.n_head = size.n_head
        self.attention = attention
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, size.mlp_ratio * d, bias=False)
        self.out = nn.Linear(size.mlp_ratio * d, d, bias=False)

    def _attend(self, q, k, v):
        if self.attention == "fused":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        t = q.shape[-2]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        return scores.masked_fill(mask, float("-inf")).softmax(dim=-1) @ v

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = self._attend(q, k, v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets)`` returns the mean next-token loss."""

    def __init__(self, size: ModelSize, vocab_size: int = 256, attention: str = "fused"):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        if size.d_model % size.n_head:
            raise ValueError(f"size {size.name!r}: d_model {size.d_model} is not divisible by n_head {size.n_head}")
        self.size = size
        self.vocab_size = vocab_size
        self.wte = nn.Embedding(vocab_size, size.d_model)
        self.wpe = nn.Embedding(size.context, size.d_model)
        self.blocks = nn.ModuleList(Block(size, attention) for _ in range(size.n_layer))
        self.ln_f = nn.LayerNorm(size.d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.size.n_layer)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = residual_std if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def non_embedding_params(self) -> int:
        """Parameters outside the token and position embeddings (counted from the module)."""
        skip = {id(self.wte.weight), id(self.wpe.weight)}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.size.context:
            raise ValueError(f"sequence length {t} exceeds the model context {self.size.context}")
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.logits(idx)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def decay_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups: weight decay on the blocks' matrices only."""
        decay = [p for n, p in self.named_parameters() if p.dim() == 2 and n.startswith("blocks.")]
        ids = {id(p) for p in decay}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_model(size: str | ModelSize, vocab_size: int = 256, attention: str = "fused", seed: int = 0) -> GPT:
    """A freshly initialised model; the same seed gives the same weights."""
    size = get_size(size)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return GPT(size, vocab_size=vocab_size, attention=attention)
    finally:
        torch.random.set_rng_state(gen_state)
