"""Planning an audit: how many images per group it needs to detect a given difference.

The inverse of ``detectable_difference`` (the smallest difference each comparison of a finished
audit could have detected): for a label set and a group structure (attribute -> number of
groups), the images per group at which a group whose flagged rate is ``difference`` above the
others is detected with probability ``power`` by the audit's own rule: a two-sided test at
alpha / (families x family size), the first step of the gate across families and of Holm
within its family. Groups are taken as equal in size and compared with the rest (the default
reference), and the rest's rate is ``base_rate``.
"""
from __future__ import annotations

from collections.abc import Mapping
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .definition import AuditSpec, group_key, load_audit_spec
from .stats import detectable_difference

MAX_IMAGES = 10**9


def families_per_attribute_set(spec: AuditSpec) -> int:
    """The families an audit has per attribute set: per harm category its top-1 rate, each class
    rate (categories of two or more classes), its top-k rate (top_k > 1); accuracy with a truth;
    one accuracy per derived grouping."""
    per_category = [1 + (len(c) if len(c) > 1 else 0) + (1 if spec.top_k > 1 else 0) for c in spec.flagged.values()]
    return sum(per_category) + (1 if spec.truth is not None else 0) + len(spec.derived)


def plan_audit(spec: str | Path | AuditSpec | Mapping[str, Any], groups: Mapping[str, int], difference: float,
               base_rate: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """Images per group needed, per attribute set of ``spec`` with the group counts ``groups``.

    Returns one row per attribute set: attribute, groups, families (of the whole audit),
    alpha_per_test, images_per_group, images (= images_per_group x groups).
    """
    spec = load_audit_spec(spec)
    _check(groups, difference, base_rate, power)
    spec = spec.with_overrides(group_by=tuple(groups))
    sets = spec.attribute_sets()
    n_families = max(1, families_per_attribute_set(spec)) * len(sets)
    rows = []
    for attrs in sets:
        g = prod(int(groups[a]) for a in attrs)
        alpha = spec.alpha / (n_families * g)
        n = _images_needed(g, difference, base_rate, alpha, power)
        rows.append({"attribute": group_key(attrs), "groups": g, "families": n_families, "alpha_per_test": alpha,
                     "images_per_group": n, "images": n * g})
    return pd.DataFrame(rows)


def _images_needed(g: int, difference: float, base_rate: float, alpha: float, power: float) -> int:
    """The smallest n with detectable_difference(n, (g - 1) n) <= difference (bisection)."""
    def ok(n: int) -> bool:
        d = detectable_difference(n, (g - 1) * n, base_rate, alpha, power)[0]
        return bool(np.isfinite(d) and d <= difference)

    lo, hi = 2, 4
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_IMAGES:
            raise InputError(f"more than {MAX_IMAGES:,} images per group would be needed to detect {difference}")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def _check(groups: Mapping[str, int], difference: float, base_rate: float, power: float) -> None:
    if not 0 < difference < 1:
        raise InputError(f"the difference to detect is a difference of rates strictly between 0 and 1, "
                         f"got {difference}")
    if not 0 <= base_rate < 1 or base_rate + difference > 1:
        raise InputError(f"base rate {base_rate} plus difference {difference} must stay within 0-1")
    if not 0 < power < 1:
        raise InputError(f"power must be between 0 and 1, got {power}")
    if not groups:
        raise InputError("the plan needs the group structure: attribute=number of groups, e.g. race=7,gender=2")
    for attr, n in groups.items():
        if not isinstance(n, int) or n < 2:
            raise InputError(f"attribute {attr!r} needs at least 2 groups to compare, got {n!r}")


def parse_groups(text: str) -> dict[str, int]:
    """'race=7,gender=2' -> {'race': 7, 'gender': 2} (the --plan-groups syntax)."""
    out: dict[str, int] = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise InputError(f"--plan-groups expects ATTRIBUTE=NUMBER[,ATTRIBUTE=NUMBER], got {item!r}")
        out[name.strip()] = int(value)
    return out
