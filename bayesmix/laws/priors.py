"""Default priors of every law, in one place, overridable by name.

All laws are parameterised so that their priors are *scale-free*: positive
quantities are given on the log (or logit) scale, and loss levels are expressed
relative to a reference loss read from the data (the loss observed at the
reference point of each curve). The same defaults therefore hold for byte-level
and token-level losses, for 1M and 1B models.

Names and meanings
------------------
Step law ``L(S) = E + A S^-alpha`` (S scaled by the largest observed step S_ref)

* ``level_sd``       sd of the loss at S_ref, as a fraction of the observed loss there.
* ``floor_logit_loc`` / ``floor_logit_sd``  population prior on logit(E / L(S_ref)).
* ``floor_logit_tau``  HalfNormal scale of curve-to-curve spread of that logit.
* ``exponent_log_loc`` / ``exponent_log_sd``  population prior on log(alpha).
* ``exponent_log_tau`` HalfNormal scale of curve-to-curve spread of log(alpha).
* ``noise_scale``    HalfNormal scale of the per-eval noise sd, as a fraction of the mean loss.
* ``student_df``     degrees of freedom of the Student-t likelihood (``inf`` gives a Normal).

Size law ``L(N) = E + B N^-beta``: the same names (beta plays alpha's role).

Mixing law M4 ``L_e(r) = c_e + exp(b_e + t_e . r)``, centred at a reference mixture r0:
``L_e(r) = c_e + (m_e - c_e) exp(t_e . (r - r0))`` with ``sum_j t_ej = 0``.

* ``level_sd``            sd of m_e = L_e(r0) as a fraction of the mean observed loss.
* ``floor_logit_loc`` / ``floor_logit_sd``  prior on logit(c_e / m_e).
* ``interaction_scale``   sd of the shared (zero-sum) interaction terms mu_j.
* ``interaction_tau``     HalfNormal scale of the eval-to-eval spread of t_ej around mu_j.
* ``noise_scale``, ``student_df`` as above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_CURVE_PRIORS = {
    "level_sd": 0.2,
    "floor_logit_loc": 1.0,
    "floor_logit_sd": 1.5,
    "floor_logit_tau": 1.0,
    "exponent_log_loc": math.log(0.4),
    "exponent_log_sd": 1.0,
    "exponent_log_tau": 0.5,
    "noise_scale": 0.05,
    "student_df": 5.0,
}

DEFAULT_PRIORS: dict[str, dict[str, float]] = {
    "step": dict(_CURVE_PRIORS),
    "size": dict(_CURVE_PRIORS, exponent_log_loc=math.log(0.3)),
    "mix": {
        "level_sd": 0.2,
        "floor_logit_loc": 0.0,
        "floor_logit_sd": 1.5,
        "interaction_scale": 2.0,
        "interaction_tau": 1.0,
        "noise_scale": 0.05,
        "student_df": 5.0,
    },
}


def resolve_priors(law: str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Return the law's default priors updated with ``overrides``.

    Raises ``KeyError`` naming the unknown keys and the valid ones.
    """
    if law not in DEFAULT_PRIORS:
        raise KeyError(f"no priors for law {law!r}; known laws: {sorted(DEFAULT_PRIORS)}")
    priors = dict(DEFAULT_PRIORS[law])
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(priors))
    if unknown:
        raise KeyError(
            f"unknown prior name(s) {unknown} for law {law!r}; valid names: {sorted(priors)}"
        )
    priors.update({k: float(v) for k, v in overrides.items()})
    return priors
