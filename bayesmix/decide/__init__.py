"""Decisions from posterior draws: the simplex toolkit, risk measures, the optimum, the trust region."""
