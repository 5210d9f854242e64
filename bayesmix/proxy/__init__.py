"""Proxy trainer: real losses from small models on real text.

Public API (imported lazily, so ``import bayesmix.proxy`` does not load torch)::

    train_run(mixture, size, **settings) -> run-table rows of one run
    sweep(mixtures, sizes, out=..., backend="local"|"ray", **settings) -> rows of all runs
    TrainConfig, SIZES, ModelSize, get_size, non_embedding_params
    load_corpus, bundled_corpus, Corpus, Domain
    read_mixtures, validate_mixture, design_mixtures
    demo_runs()  the bundled demo run table; DEMO_SETTINGS its training settings
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "train_run": "train", "TrainConfig": "train", "RunConflictError": "train", "TrainingDiverged": "train",
    "run_is_finished": "train", "remove_run": "train",
    "sweep": "sweeps", "SweepError": "sweeps", "SweepResult": "sweeps", "plan_jobs": "sweeps",
    "SIZES": "model", "ModelSize": "model", "get_size": "model", "non_embedding_params": "model",
    "build_model": "model", "GPT": "model",
    "load_corpus": "corpora", "bundled_corpus": "corpora", "Corpus": "corpora", "Domain": "corpora",
    "CorpusError": "corpora", "read_documents": "corpora",
    "ByteTokenizer": "tokenize", "build_token_cache": "tokenize", "TokenCache": "tokenize",
    "read_mixtures": "mixtures", "validate_mixture": "mixtures", "design_mixtures": "mixtures",
    "parse_mixture": "mixtures", "MixtureError": "mixtures",
    "checkpoint_steps": "schedule", "lr_at": "schedule",
    "MixtureSampler": "sampling",
    "demo_runs": "demo", "DEMO_RUNS_PATH": "demo", "BASELINE_MIXTURE": "demo", "DEMO_SETTINGS": "demo",
    "DEMO_SIZES": "demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"bayesmix.proxy.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayesmix.proxy' has no attribute {name!r}")


def __dir__():
    return __all__
