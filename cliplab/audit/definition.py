"""Audit definitions as data: which classes, which prompts, which are harmful, who is compared.

An audit is written once as a YAML file (see ``audits/*.yaml`` and docs/audit.md) and can be
shared and versioned like code. A plain text file (one class per line) or a comma list also
works; then flagged classes, truth and grouping come from the command line. Every key is
checked, so a typo is an error that names the key, never a silently ignored setting.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..configfile import check_keys, did_you_mean, parse_yaml, read_text
from ..data import where_mask
from ..errors import InputError
from ..prompts import DEFAULT_TEMPLATES, load_templates, validate_classes, validate_templates
from .sections import (
    DerivedGrouping,
    MitigationSpec,
    TruthSpec,
    parse_derived,
    parse_mitigation,
    parse_truth,
    read_truth,
    str_list,
    str_map,
    validate_derived,
    validate_mitigation,
    validate_truth,
)

INTERSECTION_SEP = " & "  # "tone & age" / "dark & child": how intersections are named (see group_key)
CORRECTIONS = ("holm", "fdr_bh", "bonferroni", "none")
REFERENCE_MODES = ("rest", "overall")  # reference of attributes without a configured group (disparities)
TOP_KEYS = ("name", "description", "classes", "templates", "flagged", "truth", "group_by", "intersections",
            "reference", "reference_mode", "where", "min_group_size", "alpha", "correction", "top_k", "n_boot", "seed",
            "retrieval", "derived", "mitigation")
RETRIEVAL_KEYS = ("queries", "k")
CLASS_KEYS = ("name", "prompts")


@dataclass(frozen=True)
class ClassSpec:
    """One class of the label set; ``prompts`` replaces the templates for this class when given."""

    name: str
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditSpec:
    """A complete audit definition. Build with :func:`load_audit_spec` (validates) or directly."""

    classes: tuple[ClassSpec, ...]
    templates: tuple[str, ...] = ("a photo of a {}.",)
    flagged: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # harm category -> classes
    truth: TruthSpec | None = None
    group_by: tuple[str, ...] = ()
    intersections: bool = True
    reference: Mapping[str, str] = field(default_factory=dict)  # attribute -> reference group
    reference_mode: str = "rest"  # attributes without a configured group: rest | overall (see disparities)
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column -> allowed values
    min_group_size: int = 30
    alpha: float = 0.05
    correction: str = "holm"
    top_k: int = 5
    n_boot: int = 2000
    seed: int = 0
    retrieval_queries: tuple[str, ...] = ()
    retrieval_k: int = 100
    derived: tuple[DerivedGrouping, ...] = ()  # coarser labels from the classes (derived_accuracy)
    mitigation: MitigationSpec = field(default_factory=MitigationSpec)  # prompts of --mitigate projection
    name: str = "audit"
    description: str = ""
    source: str = ""

    @property
    def classnames(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def class_prompts(self) -> dict[str, Sequence[str]]:
        return {c.name: list(c.prompts) for c in self.classes if c.prompts}

    @property
    def flagged_classes(self) -> list[str]:
        return [c for cls in self.flagged.values() for c in cls]

    def attribute_sets(self) -> list[tuple[str, ...]]:
        """Each group-by attribute alone, then every intersection of two or more (when enabled)."""
        from itertools import combinations

        sets: list[tuple[str, ...]] = [(a,) for a in self.group_by]
        if self.intersections:
            for r in range(2, len(self.group_by) + 1):
                sets += list(combinations(self.group_by, r))
        return sets

    def with_overrides(self, **changes: Any) -> AuditSpec:
        """A copy with some settings replaced (``None`` values are ignored); re-validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return validate_spec(replace(self, **changes)) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON/YAML-ready dict in the file format (what reports record)."""
        d = asdict(self)
        d["classes"] = [{"name": c.name, **({"prompts": list(c.prompts)} if c.prompts else {})}
                        for c in self.classes]
        d["flagged"] = {k: list(v) for k, v in self.flagged.items()}
        d["where"] = {k: list(v) for k, v in self.where.items()}
        d["retrieval"] = {"queries": list(d.pop("retrieval_queries")), "k": d.pop("retrieval_k")}
        d["derived"] = {g.name: {"labels": {k: list(v) for k, v in g.labels.items()},
                                 "truth": asdict(g.truth) if g.truth else None} for g in self.derived}
        d["mitigation"] = self.mitigation.to_dict()
        for key in ("templates", "group_by"):
            d[key] = list(d[key])
        return d

    def check_columns(self, columns: Sequence[str], source: str = "the metadata") -> None:
        """Raise InputError when a column the audit needs is missing from the image metadata."""
        cols = set(map(str, columns))
        needs = [(c, "group_by") for c in self.group_by] + [(c, "where") for c in self.where]
        needs += [(c, "truth") for c in (self.truth.columns if self.truth else [])]
        needs += [(c, f"derived[{g.name!r}].truth") for g in self.derived for c in (g.truth.columns if g.truth else [])]
        for col, key in needs:
            if col not in cols:
                shown = ", ".join(sorted(c for c in cols if c != "path"))
                hint = did_you_mean(col, cols)
                raise InputError(f"{key} column {col!r} is not in {source}{hint}; columns: {shown}")


# ------------------------------------------------------------------------------- naming
def group_key(parts: Sequence[str]) -> str:
    """The name of an attribute set or group from its parts, joined by `` & ``; a part's own
    ``\\`` and ``&`` are escaped (``\\\\``, ``\\&``) so that no two different part lists share a name:
    ("p & q", "r") is ``p \\& q & r``, ("p", "q & r") is ``p & q \\& r``. Parts without those
    characters are unchanged; tables and metrics.json also hold the parts themselves."""
    return INTERSECTION_SEP.join(str(p).replace("\\", "\\\\").replace("&", "\\&") for p in parts)


def split_key(name: str) -> tuple[str, ...]:
    """The parts of a name made by :func:`group_key` (its inverse)."""
    parts, cur, i = [], [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            cur.append(name[i + 1])
            i += 2
        elif name.startswith(INTERSECTION_SEP, i):
            parts.append("".join(cur))
            cur, i = [], i + len(INTERSECTION_SEP)
        else:
            cur.append(name[i])
            i += 1
    return (*parts, "".join(cur))


# --------------------------------------------------------------------------------- loading
def load_audit_spec(source: str | Path | AuditSpec | Mapping[str, Any] | Sequence[str]) -> AuditSpec:
    """An audit from a YAML file, a dict in the file format (e.g. built in a notebook), a text file
    (one class per line), a comma list or a list of classes."""
    if isinstance(source, AuditSpec):
        return validate_spec(source)
    if isinstance(source, Mapping):
        return spec_from_dict(source, source="audit dict")
    if not isinstance(source, (str, Path)):
        return validate_spec(AuditSpec(classes=tuple(ClassSpec(str(c)) for c in source)))
    path = Path(source).expanduser()
    if path.is_file():
        text = read_text(path, "label set")
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = parse_yaml(text, path)
            if not isinstance(data, dict):
                raise InputError(f"{path}: an audit file must be a mapping with at least 'classes'")
            return spec_from_dict(data, source=str(path))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        return validate_spec(AuditSpec(classes=tuple(ClassSpec(c) for c in lines), name=path.stem,
                                       source=str(path)))
    if path.suffix.lower() in (".yaml", ".yml", ".json", ".txt") or "/" in str(source):
        raise InputError(f"--labels {source}: no such file")
    names = [s.strip() for s in str(source).split(",") if s.strip()]
    return validate_spec(AuditSpec(classes=tuple(ClassSpec(c) for c in names), source="command line"))


def _check_keys(data: Mapping, allowed: Sequence[str], where: str) -> None:
    check_keys(data, allowed, where)


def spec_from_dict(data: Mapping[str, Any], source: str = "audit") -> AuditSpec:
    """Build and validate an AuditSpec from the file format (a parsed YAML mapping)."""
    _check_keys(data, TOP_KEYS, source)
    if "classes" not in data:
        raise InputError(f"{source}: no 'classes' (the label set) given")
    kw: dict[str, Any] = {"source": source, "classes": _classes(data["classes"], source)}
    if "templates" in data:
        t = data["templates"]
        kw["templates"] = tuple(load_templates(t if isinstance(t, list) else str(t)))
    elif any(not c.prompts for c in kw["classes"]):
        kw["templates"] = tuple(load_templates(DEFAULT_TEMPLATES))
    if data.get("flagged") is not None:
        if not isinstance(data["flagged"], dict):
            raise InputError(f"{source}: 'flagged' must map a harm category to its classes, "
                             "e.g. {crime-related: [thief, criminal]}")
        kw["flagged"] = {str(k): str_list(v, f"{source}: flagged[{k!r}]") for k, v in data["flagged"].items()}
    if data.get("truth") is not None:
        kw["truth"] = parse_truth(data["truth"], f"{source}: truth")
    for key in ("group_by",):
        if data.get(key) is not None:
            kw[key] = str_list(data[key], f"{source}: {key}")
    if data.get("reference") is not None:
        kw["reference"] = str_map(data["reference"], f"{source}: reference")
    if data.get("where") is not None:
        w = data["where"]
        if not isinstance(w, dict):
            raise InputError(f"{source}: 'where' must map a column to a value or a list of values")
        kw["where"] = {str(k): str_list(v, f"{source}: where[{k!r}]") for k, v in w.items()}
    for key, kind in (("name", str), ("description", str), ("reference_mode", str), ("min_group_size", int),
                      ("alpha", float),
                      ("correction", str), ("top_k", int), ("n_boot", int), ("seed", int),
                      ("intersections", bool)):
        if data.get(key) is not None:
            kw[key] = _typed(data[key], kind, f"{source}: {key}")
    if data.get("retrieval") is not None:
        r = data["retrieval"]
        if not isinstance(r, dict):
            raise InputError(f"{source}: 'retrieval' must be a mapping with 'queries' and optional 'k'")
        _check_keys(r, RETRIEVAL_KEYS, f"{source}: retrieval")
        kw["retrieval_queries"] = str_list(r.get("queries", []), f"{source}: retrieval.queries")
        if r.get("k") is not None:
            kw["retrieval_k"] = _typed(r["k"], int, f"{source}: retrieval.k")
    if data.get("derived") is not None:
        kw["derived"] = parse_derived(data["derived"], source)
    if data.get("mitigation") is not None:
        kw["mitigation"] = parse_mitigation(data["mitigation"], source)
    return validate_spec(AuditSpec(**kw))


def _typed(value: Any, kind: type, what: str) -> Any:
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise InputError(f"{what} must be {names[kind]}, got {value!r}")


def _classes(value: Any, source: str) -> tuple[ClassSpec, ...]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, list):
        raise InputError(f"{source}: 'classes' must be a list of class names or {{name, prompts}} entries")
    out = []
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            _check_keys(entry, CLASS_KEYS, f"{source}: classes[{i}]")
            if "name" not in entry:
                raise InputError(f"{source}: classes[{i}] has no 'name'")
            prompts = str_list(entry.get("prompts") or [], f"{source}: classes[{i}].prompts")
            out.append(ClassSpec(str(entry["name"]).strip(), prompts))
        elif isinstance(entry, (str, int, float)) and not isinstance(entry, bool):
            out.append(ClassSpec(str(entry).strip()))
        else:
            raise InputError(f"{source}: classes[{i}] must be a name or a {{name, prompts}} mapping, got {entry!r}")
    return tuple(out)


# ------------------------------------------------------------------------------ validation
def validate_spec(spec: AuditSpec) -> AuditSpec:
    """Check the spec as a whole; raise InputError naming the first problem."""
    where = spec.source or "audit"
    names = validate_classes(spec.classnames)
    if any(not c.prompts for c in spec.classes) or spec.templates:
        validate_templates(spec.templates)
    index = set(names)
    seen: dict[str, str] = {}
    for category, classes in spec.flagged.items():
        if not str(category).strip():
            raise InputError(f"{where}: a flagged harm category has an empty name")
        if not classes:
            raise InputError(f"{where}: flagged category {category!r} lists no classes")
        for c in classes:
            if c not in index:
                hint = did_you_mean(c, names)
                raise InputError(f"{where}: flagged class {c!r} (category {category!r}) is not one of the "
                                 f"classes{hint}")
            if c in seen:
                raise InputError(f"{where}: class {c!r} is flagged under both {seen[c]!r} and {category!r}")
            seen[c] = category
    if len(set(spec.group_by)) != len(spec.group_by):
        raise InputError(f"{where}: group_by names a column twice: {', '.join(spec.group_by)}")
    for attr in spec.reference:
        known = [group_key(s) for s in spec.attribute_sets()]
        if attr not in known:
            raise InputError(f"{where}: reference given for {attr!r}, which is not a group_by attribute "
                             f"({', '.join(known) or 'none'})")
    validate_truth(spec.truth, where)
    validate_derived(spec.derived, names, spec.truth is not None, where)
    validate_mitigation(spec.mitigation, where)
    _validate_numbers(spec, where)
    return spec


def _validate_numbers(spec: AuditSpec, where: str) -> None:
    if spec.min_group_size < 1:
        raise InputError(f"{where}: min_group_size must be at least 1, got {spec.min_group_size}")
    if not 0 < spec.alpha < 1:
        raise InputError(f"{where}: alpha must be between 0 and 1, got {spec.alpha}")
    if spec.reference_mode not in REFERENCE_MODES:
        raise InputError(f"{where}: reference_mode must be one of {', '.join(REFERENCE_MODES)}, "
                         f"got {spec.reference_mode!r}")
    if spec.correction not in CORRECTIONS:
        raise InputError(f"{where}: correction must be one of {', '.join(CORRECTIONS)}, got {spec.correction!r}")
    if spec.top_k < 1:
        raise InputError(f"{where}: top_k must be at least 1, got {spec.top_k}")
    if spec.n_boot < 100:
        raise InputError(f"{where}: n_boot must be at least 100, got {spec.n_boot}")
    if spec.retrieval_k < 1:
        raise InputError(f"{where}: retrieval.k must be at least 1, got {spec.retrieval_k}")
    if any(not q.strip() for q in spec.retrieval_queries):
        raise InputError(f"{where}: a retrieval query is empty")


# ------------------------------------------------------------------ applying to metadata
def select_rows(records: pd.DataFrame, spec: AuditSpec) -> pd.Series:
    """Boolean mask of the rows the audit covers (its ``where`` filter)."""
    return where_mask(records, spec.where)


def true_classes(records: pd.DataFrame, spec: AuditSpec) -> tuple[pd.Series, dict[str, int]]:
    """The true class name of each row (``<NA>`` where none) and counts of why some have none."""
    if spec.truth is None:
        return pd.Series(pd.NA, index=records.index, dtype="string"), {"no_truth_defined": len(records)}
    return read_truth(records, spec.truth, spec.classnames)
