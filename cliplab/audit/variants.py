"""Verdicts tested against wording: the same audit under other templates or other names for the
flagged classes, on the cached image embeddings (only the texts are encoded again).

A detection that holds under only some wordings is **fragile**: the verdict depends on how the
prompt was phrased, not only on the model. Per disparity (attribute, group, metric, category,
k): the range of the difference across the variants, the share of variants that detect it and
``fragile`` (detected by some variants, not all). The audit as written is variant 0.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..configfile import parse_yaml, read_text
from ..errors import InputError
from ..prompts import TEMPLATE_DIR, fill, template_sets
from .definition import AuditSpec, ClassSpec
from .run import PreparedAudit, audit_loaded

KEY = ["attribute", "group", "metric", "category", "k"]


def load_template_variants(source: str | Path) -> list[str]:
    """One template per variant: a shipped set's name (e.g. openai-imagenet) or a file, one
    template per line; an empty line or a line without ``{}`` is an error."""
    path = TEMPLATE_DIR / f"{source}.txt" if str(source) in template_sets() else Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"--template-variants {source}: no such file or template set ({', '.join(template_sets())})")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    lines = [ln for ln in lines if not ln.lstrip().startswith("#")]
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            raise InputError(f"{path}: line {i} is empty (one template per line)")
        if "{}" not in line:
            raise InputError(f"{path}: line {i} {line.strip()!r} has no {{}} to mark the class name")
    if not lines:
        raise InputError(f"{path}: no template variants")
    return [ln.strip() for ln in lines]


def load_label_variants(source: str | Path, spec: AuditSpec) -> list[dict[str, str]]:
    """Synonyms per flagged class, a YAML mapping {class: [synonym, ...]} with lists of one
    length: variant i names each listed class by its i-th synonym."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"--label-variants {source}: no such file")
    data = parse_yaml(read_text(path, "label variants file"), path)  # duplicate keys refused, as in label sets
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a mapping of flagged class -> list of synonyms")
    names = {c.casefold(): c for c in spec.classnames}
    lengths = set()
    for cls, synonyms in data.items():
        if str(cls) not in spec.flagged_classes:
            raise InputError(f"{path}: {cls!r} is not a flagged class of the audit")
        if not isinstance(synonyms, list) or not synonyms or not all(str(s).strip() for s in synonyms):
            raise InputError(f"{path}: {cls!r} needs a list of non-empty synonyms")
        for s in synonyms:
            hit = names.get(str(s).strip().casefold())
            if hit is not None:
                raise InputError(f"{path}: synonym {str(s)!r} of {cls!r} is the name of class {hit!r}")
        lengths.add(len(synonyms))
    if len(lengths) > 1:
        raise InputError(f"{path}: every class needs the same number of synonyms (got {sorted(lengths)})")
    n = lengths.pop()
    return [{str(c): str(s[i]).strip() for c, s in data.items()} for i in range(n)]


def variant_specs(spec: AuditSpec, templates: list[str] | None = None,
                  labels: list[dict[str, str]] | None = None) -> list[tuple[str, AuditSpec]]:
    """(name, spec) of the audit as written, then one per template and one per label variant."""
    out = [("as written", spec)]
    for t in templates or []:
        out.append((f"template: {t}", replace(spec, templates=(t,))))
    for names in labels or []:
        classes = tuple(ClassSpec(c.name, tuple(fill(t, names[c.name]) for t in spec.templates))
                        if c.name in names else c for c in spec.classes)
        out.append(("labels: " + ", ".join(f"{c}={s}" for c, s in names.items()), replace(spec, classes=classes)))
    return out


def wording_robustness(loaded, prepared: PreparedAudit, templates: list[str] | None = None,
                       labels: list[dict[str, str]] | None = None) -> pd.DataFrame:
    """Per disparity: difference under the audit as written, its min and max across variants,
    the share of variants that detect it, and ``fragile``."""
    rows = []
    for name, spec in variant_specs(prepared.spec, templates, labels):
        d = audit_loaded(loaded, replace(prepared, spec=spec)).disparities
        rows.append(d[[*KEY, "difference", "detected"]].assign(variant=name))
    t = pd.concat(rows, ignore_index=True)
    agg = t.groupby(KEY, sort=False).agg(difference_min=("difference", "min"), difference_max=("difference", "max"),
                                         detected_share=("detected", "mean"), n_variants=("variant", "size"))
    written = t[t["variant"] == "as written"].set_index(KEY)[["difference", "detected"]]
    out = written.join(agg, how="outer").reset_index()
    out["fragile"] = (out["detected_share"] > 0) & (out["detected_share"] < 1)
    return out
