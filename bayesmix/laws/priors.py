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

Schedule-aware step law ``L = E + A S1^-alpha - C S2`` (``bayesmix.laws.annealing``): the step
law's names, plus

* ``anneal_log_loc`` / ``anneal_log_sd``  population prior on log(C / L(S1_ref)), the annealing
  coefficient relative to the loss level (areas scaled by the largest forward area).
* ``anneal_log_tau``  HalfNormal scale of the curve-to-curve spread of that log.

Mixing law M4 ``L_e(r) = c_e + exp(b_e + t_e . r)``, centred at a reference mixture r0:
``L_e(r) = c_e + (m_e - c_e) exp(t_e . (r - r0))`` with ``sum_j t_ej = 0``.

* ``level_sd``            sd of m_e = L_e(r0) as a fraction of the mean observed loss.
* ``floor_logit_loc`` / ``floor_logit_sd``  prior on logit(c_e / m_e).
* ``interaction_scale``   sd of the shared (zero-sum) interaction terms mu_j.
* ``interaction_tau``     HalfNormal scale of the eval-to-eval spread of t_ej around mu_j.
* ``noise_scale``, ``student_df`` as above.

Implicit aggregation ``L(r) = floor + (level - floor) sum_k w_k exp(t_k . (r - r0))``
(``bayesmix.laws.implicit``; K latent eval domains):

* ``level_sd``, ``floor_logit_loc`` / ``floor_logit_sd``, ``noise_scale``, ``student_df`` as for M4.
* ``interaction_scale``   HalfNormal scale of tau, the global size of t (t_kj = tau lambda_j z_kj).
* ``domain_scale``        HalfNormal scale of lambda_j, one relevance scale per training domain.
* ``weight_logit_sd``     sd of the (exchangeable) logits of the latent weights w = softmax(a).

Alternative forms M1-M3 (``bayesmix.laws.alternatives``): ``level_sd``,
``floor_logit_loc`` / ``floor_logit_sd``, ``noise_scale``, ``student_df`` as for
M4; ``interaction_scale`` the sd of t_j (M1, M2) or of the product coefficient
u (M3); ``weight_logit_sd`` the sd of the logits of M2's domain weights.

BiMix ``L_e = level_e (r_e / r_ref_e)^-alpha_e (share_e + (1 - share_e) (S / S_ref)^-beta_e)``
(``bayesmix.laws.bimix``):

* ``level_sd``, ``noise_scale``, ``student_df`` as above.
* ``proportion_exponent_log_loc`` / ``_sd`` / ``_tau``  prior on log(alpha_e): population mean, its sd,
  HalfNormal scale of the eval-to-eval spread.
* ``step_exponent_log_loc`` / ``_sd`` / ``_tau``        the same for log(beta_e).
* ``floor_logit_loc`` / ``_sd`` / ``_tau``              the same for logit(share_e), the irreducible
  share of the loss at S_ref.

Multi-scale M4 (``bayesmix.laws.multiscale``): the M4 names, plus

* ``group_tau``   HalfNormal scale of the spread of a (size, step) group's interactions around
  the eval domain's shared interactions.
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
    "anneal": dict(_CURVE_PRIORS, anneal_log_loc=math.log(0.2), anneal_log_sd=1.5, anneal_log_tau=1.0),
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

_M4_LIKE = {
    "level_sd": 0.2,
    "floor_logit_loc": 0.0,
    "floor_logit_sd": 1.5,
    "noise_scale": 0.05,
    "student_df": 5.0,
}

DEFAULT_PRIORS.update({
    "implicit": dict(_M4_LIKE, interaction_scale=2.0, domain_scale=1.0, weight_logit_sd=2.0),
    "m1": dict(_M4_LIKE, interaction_scale=2.0),
    "m2": dict(_M4_LIKE, interaction_scale=2.0, weight_logit_sd=2.0),
    "m3": dict(_M4_LIKE, interaction_scale=2.0),
    "bimix": {
        "level_sd": 0.2,
        "proportion_exponent_log_loc": math.log(0.05),
        "proportion_exponent_log_sd": 1.5,
        "proportion_exponent_log_tau": 1.0,
        "step_exponent_log_loc": math.log(0.4),
        "step_exponent_log_sd": 1.0,
        "step_exponent_log_tau": 0.5,
        "floor_logit_loc": 1.0,
        "floor_logit_sd": 1.5,
        "floor_logit_tau": 1.0,
        "noise_scale": 0.05,
        "student_df": 5.0,
    },
    "multiscale": dict(DEFAULT_PRIORS["mix"], group_tau=0.5),
    "size_pooled": dict(DEFAULT_PRIORS["size"]),  # the pipeline's size law: the same priors, read the same way
})


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
    for name, value in overrides.items():
        priors[name] = check_prior(name, value)
    return priors


def prior_constraint(name: str) -> str:
    """What a prior's value must be: scales (``*_sd``, ``*_tau``, ``*_scale``) and ``student_df``
    are positive (``student_df`` may be ``inf``), locations are finite."""
    if name == "student_df":
        return "positive (inf gives a Normal likelihood)"
    if name.endswith(("_sd", "_tau", "_scale")):
        return "positive and finite (it is a scale)"
    return "finite"


def check_prior(name: str, value) -> float:
    """``value`` as a float, or ``ValueError`` naming the prior and its constraint."""
    constraint = prior_constraint(name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"prior {name!r} must be a number, {constraint}; got {value!r}") from None
    if name == "student_df":
        ok = number > 0  # inf allowed; nan > 0 is False
    elif constraint == "finite":
        ok = math.isfinite(number)
    else:
        ok = math.isfinite(number) and number > 0
    if not ok:
        raise ValueError(f"prior {name!r} must be {constraint}; got {value!r}")
    return number
