"""The optional sections of an audit file: the true class (``truth``), derived groupings
(``derived``) and the mitigation check (``mitigation``), read, validated and applied to metadata.

Below :mod:`.definition` (which holds the spec as a whole): each section is parsed from the file
format here, and every problem is a one-line InputError that names the section and the entry.
"""
from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..configfile import check_keys, did_you_mean
from ..errors import InputError

TRUTH_KEYS = ("column", "map", "format", "values")
DERIVED_KEYS = ("labels", "truth")
MITIGATION_KEYS = ("attribute", "words", "prompts", "pairs", "lambda", "centre")
# Chuang et al. (2023)'s authors' code: --lam defaults to 1000 for zero-shot classifiers
# (discriminative/main.py) and to 500 for text-to-image generation; an audit is the former.
DEFAULT_LAMBDA = 1000.0
DEFAULT_BIAS_PROMPTS = ("a photo of a {value} person.",)
DEFAULT_PAIR_PROMPTS = ("a photo of a {value} {class}.",)


def str_list(value: Any, what: str) -> tuple[str, ...]:
    """A string or a list of strings (numbers are read as text) as a tuple of strings."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                       for v in value):
        return tuple(str(v) for v in value)
    raise InputError(f"{what} must be a string or a list of strings, got {value!r}")


def str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a mapping, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


# ------------------------------------------------------------------------------------ truth
@dataclass(frozen=True)
class TruthSpec:
    """How the true class of an image is read from its metadata.

    Either ``column`` (its values are class names, optionally recoded by ``map``), or ``format``
    (e.g. ``"{race} {gender}"``) built from attribute columns, each optionally recoded by
    ``values[column]`` first. Values that do not name a class give "no truth" (counted).
    """

    column: str | None = None
    map: Mapping[str, str] = field(default_factory=dict)
    format: str | None = None
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        if self.column:
            return [self.column]
        return [f for _, f, _, _ in string.Formatter().parse(self.format or "") if f]


def parse_truth(value: Any, source: str) -> TruthSpec:
    """A ``truth`` entry: a column name, or a mapping (column/map or format/values)."""
    if isinstance(value, str):
        return TruthSpec(column=value)
    if not isinstance(value, dict):
        raise InputError(f"{source} must be a column name or a mapping (column/map or format/values)")
    check_keys(value, TRUTH_KEYS, source)
    values = value.get("values") or {}
    if not isinstance(values, dict):
        raise InputError(f"{source}.values must map a column to {{value: replacement}}")
    return TruthSpec(column=str(value["column"]) if value.get("column") is not None else None,
                     map=str_map(value.get("map") or {}, f"{source}.map"),
                     format=str(value["format"]) if value.get("format") is not None else None,
                     values={str(k): str_map(v, f"{source}.values[{k!r}]") for k, v in values.items()})


def validate_truth(truth: TruthSpec | None, where: str) -> None:
    if truth is None:
        return
    if bool(truth.column) == bool(truth.format):
        raise InputError(f"{where}: truth needs exactly one of 'column' or 'format'")
    if truth.format is not None and not truth.columns:
        raise InputError(f"{where}: truth.format {truth.format!r} names no column; write e.g. '{{race}} {{gender}}'")
    if truth.map and truth.format:
        raise InputError(f"{where}: truth.map goes with truth.column; with truth.format use truth.values")
    if truth.values and truth.column:
        raise InputError(f"{where}: truth.values goes with truth.format; with truth.column use truth.map")
    unknown = [c for c in truth.values if c not in truth.columns]
    if unknown:
        raise InputError(f"{where}: truth.values recodes {unknown[0]!r}, which truth.format does not use")


def read_truth(records: pd.DataFrame, t: TruthSpec, labels: list[str]) -> tuple[pd.Series, dict[str, int]]:
    """Each row's true label (one of ``labels``; ``<NA>`` where none) and counts of why some have none."""
    if t.column:
        raw = records[t.column].astype("string")
        truth = raw.map(lambda v: t.map.get(v, v) if v is not pd.NA else v).astype("string") if t.map else raw
        missing = raw.isna()
    else:
        parts = {c: records[c].astype("string") for c in t.columns}
        missing = pd.concat([p.isna() for p in parts.values()], axis=1).any(axis=1)
        truth = _format_columns(t, parts, records.index)
    truth = truth.str.strip().mask(missing)
    known = truth.isin(labels).fillna(False).astype(bool)
    counts = {"missing_truth_value": int(missing.sum()),
              "truth_not_in_label_set": int((~missing & ~known).sum())}
    return truth.where(known), counts


def _format_columns(t: TruthSpec, parts: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """``t.format`` filled from whole columns at once (vectorised; a million rows in well under a second)."""
    out = pd.Series("", index=index, dtype="string")
    for literal, name, _, _ in string.Formatter().parse(t.format or ""):
        out = out + literal
        if name:
            col = parts[name].fillna("")
            recode = t.values.get(name)
            out = out + (col.replace(dict(recode)) if recode else col)
    return out


# ---------------------------------------------------------------------------------- derived
@dataclass(frozen=True)
class DerivedGrouping:
    """A coarser label derived from the classes, e.g. gender from 14 race x gender classes.

    ``labels``: coarse label -> its classes (a class in none of them, such as 'thief', is a wrong
    coarse prediction). ``truth``: the coarse true label from the metadata; without it, the
    coarse label of the image's true class.
    """

    name: str
    labels: Mapping[str, tuple[str, ...]]
    truth: TruthSpec | None = None

    def label_of(self) -> dict[str, str]:
        """class -> its coarse label."""
        return {c: label for label, classes in self.labels.items() for c in classes}


def parse_derived(value: Any, source: str) -> tuple[DerivedGrouping, ...]:
    """``derived: {gender: {man: [...], woman: [...]}}``, or per grouping ``{labels: {...}, truth: ...}``."""
    if not isinstance(value, dict):
        raise InputError(f"{source}: 'derived' must map a grouping name to {{coarse label: [classes]}}, "
                         "e.g. {gender: {man: [White man, ...], woman: [White woman, ...]}}")
    out = []
    for name, entry in value.items():
        where = f"{source}: derived[{name!r}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must map coarse labels to lists of classes, got {entry!r}")
        truth = None
        if isinstance(entry.get("labels"), dict) and set(entry) <= set(DERIVED_KEYS):
            truth = parse_truth(entry["truth"], f"{where}.truth") if entry.get("truth") is not None else None
            entry = entry["labels"]
        labels = {str(k).strip(): tuple(c.strip() for c in str_list(v, f"{where}[{k!r}]")) if v is not None else ()
                  for k, v in entry.items()}
        out.append(DerivedGrouping(str(name).strip(), labels, truth))
    return tuple(out)


def validate_derived(derived: tuple[DerivedGrouping, ...], classnames: list[str], has_truth: bool, where: str) -> None:
    names = set()
    for g in derived:
        w = f"{where}: derived grouping {g.name!r}"
        if not g.name:
            raise InputError(f"{where}: a derived grouping has an empty name")
        if g.name in names:
            raise InputError(f"{w} is defined twice")
        names.add(g.name)
        if len(g.labels) < 2:
            raise InputError(f"{w} needs two or more coarse labels, got {len(g.labels)}")
        seen: dict[str, str] = {}
        for label, classes in g.labels.items():
            if not label:
                raise InputError(f"{w} has an empty coarse label")
            if not classes:
                raise InputError(f"{w}: coarse label {label!r} lists no classes")
            for c in classes:
                if c not in classnames:
                    raise InputError(f"{w}: class {c!r} (coarse label {label!r}) is not one of the classes"
                                     f"{did_you_mean(c, classnames)}")
                if c in seen:
                    raise InputError(f"{w}: class {c!r} is in both {seen[c]!r} and {label!r}")
                seen[c] = label
        validate_truth(g.truth, w)
        if g.truth is None and not has_truth:
            raise InputError(f"{w} needs a true label: the audit's truth, or its own truth "
                             "({labels: {...}, truth: {column: ...}})")


def derived_truth(records: pd.DataFrame, grouping: DerivedGrouping, fine: pd.Series) -> pd.Series:
    """Each row's coarse true label (``<NA>`` where none): from the grouping's own truth, else
    the coarse label of the true class ``fine``."""
    if grouping.truth is not None:
        return read_truth(records, grouping.truth, list(grouping.labels))[0]
    return fine.map(grouping.label_of(), na_action="ignore").astype("string")


# ------------------------------------------------------------------------------- mitigation
@dataclass(frozen=True)
class MitigationSpec:
    """The prompts of the mitigation check (``--mitigate projection``).

    ``words``: attribute -> value -> the words that name it in prompts (default: the value
    itself). ``prompts``: the biased prompts, ``{value}`` for the words (they span the bias
    subspace); ``pairs``: the calibration pairs, ``{value}`` and ``{class}`` (each class named
    with two different values' words). ``lam``: the calibration weight (lambda).
    """

    attribute: str | None = None
    words: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    prompts: tuple[str, ...] = DEFAULT_BIAS_PROMPTS
    pairs: tuple[str, ...] = DEFAULT_PAIR_PROMPTS
    lam: float = DEFAULT_LAMBDA
    centre: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "words": {a: {v: list(w) for v, w in m.items()}
                                                       for a, m in self.words.items()},
                "prompts": list(self.prompts), "pairs": list(self.pairs), "lambda": self.lam, "centre": self.centre}


def parse_mitigation(value: Any, source: str) -> MitigationSpec:
    where = f"{source}: mitigation"
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping ({', '.join(MITIGATION_KEYS)})")
    check_keys(value, MITIGATION_KEYS, where)
    kw: dict[str, Any] = {}
    if value.get("attribute") is not None:
        kw["attribute"] = str(value["attribute"]).strip()
    words = value.get("words") or {}
    if not isinstance(words, dict) or not all(isinstance(m, dict) for m in words.values()):
        raise InputError(f"{where}.words must map an attribute to {{value: word or [words]}}, "
                         "e.g. {tone: {dark: dark-skinned, light: light-skinned}}")
    kw["words"] = {str(a): {str(v): str_list(w, f"{where}.words[{a!r}][{v!r}]") for v, w in m.items()}
                   for a, m in words.items()}
    for key in ("prompts", "pairs"):
        if key in value:
            kw[key] = str_list(value[key] if value[key] is not None else [], f"{where}.{key}")
    if value.get("lambda") is not None:
        lam = value["lambda"]
        if isinstance(lam, bool) or not isinstance(lam, (int, float)):
            raise InputError(f"{where}.lambda must be a number, got {lam!r}")
        kw["lam"] = float(lam)
    if value.get("centre") is not None:
        if not isinstance(value["centre"], bool):
            raise InputError(f"{where}.centre must be true or false, got {value['centre']!r}")
        kw["centre"] = value["centre"]
    return MitigationSpec(**kw)


def validate_mitigation(m: MitigationSpec, where: str) -> None:
    w = f"{where}: mitigation"
    if not m.prompts:
        raise InputError(f"{w}.prompts is empty: give the biased prompts, e.g. ['a photo of a {{value}} person.']")
    if not m.pairs:
        raise InputError(f"{w}.pairs is empty: give the pair prompts, e.g. ['a photo of a {{value}} {{class}}.']")
    for p in m.prompts:
        if "{value}" not in p:
            raise InputError(f"{w}.prompts entry {p!r} has no {{value}} for the attribute's words")
    for p in m.pairs:
        if "{value}" not in p or "{class}" not in p:
            raise InputError(f"{w}.pairs entry {p!r} needs both {{value}} and {{class}}")
    if not m.lam >= 0:
        raise InputError(f"{w}.lambda must be 0 or more, got {m.lam}")
    for attr, values in m.words.items():
        for value, words in values.items():
            if not words or any(not s.strip() for s in words):
                raise InputError(f"{w}.words[{attr!r}][{value!r}] has an empty word")
