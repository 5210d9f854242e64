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

import lazy_loader

_EXPORTS = {  # submodule -> the names it exports
    "train": ["train_run", "TrainConfig", "RunConflictError", "TrainingDiverged", "run_is_finished", "remove_run"],
    "sweeps": ["sweep", "SweepError", "SweepResult", "plan_jobs"],
    "model": ["SIZES", "ModelSize", "get_size", "non_embedding_params", "build_model", "GPT"],
    "corpora": ["load_corpus", "bundled_corpus", "Corpus", "Domain", "CorpusError", "read_documents"],
    "tokenize": ["ByteTokenizer", "build_token_cache", "TokenCache"],
    "mixtures": ["read_mixtures", "validate_mixture", "design_mixtures", "parse_mixture", "MixtureError"],
    "schedule": ["checkpoint_steps", "lr_at"],
    "sampling": ["MixtureSampler"],
    "demo": ["demo_runs", "DEMO_RUNS_PATH", "BASELINE_MIXTURE", "DEMO_SETTINGS", "DEMO_SIZES"],
}

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs=_EXPORTS)
