"""NUTS, many datasets at once (lanes), diagnostics, fit results (save/load), the bootstrap and law comparison."""
