"""bayesmix: Bayesian data-mixing laws for choosing pretraining mixtures."""

__version__ = "0.1.0"
