"""``"code=0.3,web=0.5"`` text -> ``{"code": 0.3, "web": 0.5}``: the one parser of ``KEY=VALUE`` lists.

Used for mixtures and bounds on the command line (``--r-max code=0.3``), priors
(``--prior noise_scale=0.1``), eval weights and a baseline given as proportions.
"""

from __future__ import annotations

from bayesmix.data.table import MIX_PREFIX


def parse_key_values(text: str, *, form: str = "DOMAIN=VALUE", error: type[Exception] = ValueError,
                     require: bool = False) -> dict[str, float]:
    """Comma-separated ``KEY=NUMBER`` items as a dict (``mix.`` prefixes dropped from keys).

    ``form`` names the expected form in messages; ``error`` is the exception raised (e.g.
    ``argparse.ArgumentTypeError``); ``require``: an empty list is an error too.
    """
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in str(text).split(","))):
        if "=" not in item:
            raise error(f"expected {form}, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        key = key.removeprefix(MIX_PREFIX)
        try:
            out[key] = float(value)
        except ValueError:
            raise error(f"{form.split('=')[1].lower()} of {key!r} is not a number: {value!r}") from None
    if require and not out:
        raise error(f"expected {form}[,{form}...]")
    return out


__all__ = ["parse_key_values"]
