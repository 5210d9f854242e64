"""Argument types shared by the commands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse

from bayesmix.data.keyvalues import parse_key_values


def proportions(text: str) -> dict[str, float]:
    """``"code=0.3,web=0.5"`` -> {"code": 0.3, "web": 0.5} (``mix.`` prefixes dropped)."""
    return parse_key_values(text, error=argparse.ArgumentTypeError, require=True)


def named_values(text: str) -> dict[str, float]:
    """``"noise_scale=0.1,student_df=5"`` -> {"noise_scale": 0.1, "student_df": 5.0}."""
    return parse_key_values(text, form="NAME=VALUE", error=argparse.ArgumentTypeError)


def count(text: str) -> int:
    """A positive whole number, also written as ``1e9``."""
    value = float(text)
    if not value.is_integer() or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


__all__ = ["count", "named_values", "proportions"]
