"""Model family: sizes as data, exact non-embedding counts, attention variants, schedule."""

from __future__ import annotations

import math

import pytest
import torch

from bayesmix.proxy.model import GPT, SIZES, ModelSize, build_model, get_size, non_embedding_params
from bayesmix.proxy.schedule import checkpoint_steps, default_warmup, lr_at


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", list(SIZES))
def test_non_embedding_count_is_exact(name):
    size = SIZES[name]
    with torch.device("meta"):
        model = GPT(size, vocab_size=256)
    assert model.non_embedding_params() == size.non_embedding_params == non_embedding_params(name)
    total = sum(p.numel() for p in model.parameters())
    assert total == size.non_embedding_params + size.embedding_params(256)


def test_family_spans_tenth_of_a_million_to_beyond_a_hundred_million():
    counts = [s.non_embedding_params for s in SIZES.values()]
    assert counts == sorted(counts)
    assert 0.05e6 < counts[0] < 0.2e6
    assert counts[-1] > 100e6
    assert all(s.d_model % s.n_head == 0 for s in SIZES.values())


def test_unknown_size_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model size 'huge'.*100k"):
        get_size("huge")


def test_bad_model_definitions_are_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        GPT(ModelSize("odd", 1, 30, 4, 1e-3))
    with pytest.raises(ValueError, match="attention must be one of"):
        GPT(SIZES["100k"], attention="flash9")


def test_fused_and_reference_attention_agree_and_init_is_seeded():
    state = torch.random.get_rng_state()
    a = build_model("100k", attention="fused", seed=3)
    b = build_model("100k", attention="reference", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state), "building a model must not move the global RNG"
    x = torch.randint(0, 256, (2, 17), generator=torch.Generator().manual_seed(0))
    la, lb = a(x[:, :-1], x[:, 1:]), b(x[:, :-1], x[:, 1:])
    assert torch.allclose(la, lb, atol=1e-5)
    assert abs(la.item() - math.log(256)) < 0.5  # near-uniform predictions at initialisation
    c = build_model("100k", seed=4)
    assert not torch.equal(a.blocks[0].qkv.weight, c.blocks[0].qkv.weight)


def test_sequence_longer_than_context_is_an_error():
    model = build_model(ModelSize("tiny", 1, 32, 2, 1e-3, context=8))
    x = torch.zeros(1, 9, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds the model context"):
        model(x, x)


def test_flops_per_token_follows_the_palm_convention():
    s = SIZES["21M"]
    assert s.flops_per_token(1024) == 6 * (s.non_embedding_params + 384 * 256) + 12 * 12 * 384 * 1024


def test_schedule_warms_up_then_decays_to_a_tenth_at_the_planned_step():
    kw = dict(peak=1.0, warmup=10, plan_steps=110, min_ratio=0.1)
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)
    lrs = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))
    # a run that stops at 30% of its plan is still well above the floor
    assert lr_at(33, **kw) > 0.8
    assert default_warmup(100_000) == 2000 and default_warmup(10) == 1


def test_checkpoints_are_log_spaced_and_end_at_the_stopping_step():
    steps = checkpoint_steps(3000, 10)
    assert steps[-1] == 3000 and len(steps) == 10 and steps[0] == 3000 // 32
    ratios = [b / a for a, b in zip(steps, steps[1:])]
    assert max(ratios) / min(ratios) < 1.1
    assert checkpoint_steps(5, 10) == [1, 2, 3, 4, 5]
    assert checkpoint_steps(7, 1) == [7]
    with pytest.raises(ValueError, match="first checkpoint"):
        checkpoint_steps(10, 3, first=11)
    with pytest.raises(ValueError, match="positive"):
        checkpoint_steps(0, 3)
