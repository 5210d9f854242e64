"""The nested step -> size -> mixing pipeline: plan, stages, propagation modes, backtests and discrepancy, error budget, result."""
