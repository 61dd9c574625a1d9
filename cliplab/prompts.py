"""Class names and prompt templates: read from files, shipped sets or comma lists, and validated.

A template marks the class name with ``{}``. Shipped sets live in ``cliplab/templates/*.txt``
(``openai-imagenet`` is the CLIP paper's 80 ImageNet templates, taken from open_clip).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from .errors import InputError

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_TEMPLATES = "default"


def template_sets() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.txt"))


def fill(template: str, classname: str) -> str:
    # str.replace, not str.format: a class name or template may hold other braces.
    return template.replace("{}", classname)


def _read_list(spec: str | Path, what: str, split_commas: bool = True) -> list[str]:
    """Entries of a .txt (one per line, # comments), .yaml/.json list, an inline JSON list
    (``'["a {}.", "b, {}"]'``), or an inline string: comma-separated if ``split_commas``, else one entry."""
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        if path.suffix.lower() in (".yaml", ".yml", ".json"):
            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise InputError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
            if not isinstance(items, list) or not all(isinstance(i, (str, int, float)) for i in items):
                raise InputError(f"{path}: expected a list of {what}")
            return [str(i).strip() for i in items]
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    text = str(spec).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{what} given inline as a JSON list do not parse: {e.msg} "
                             f"(at character {e.pos})") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InputError(f"{what} given inline as JSON must be a list of strings")
        return [i.strip() for i in items]
    if isinstance(spec, str) and (path.suffix.lower() in (".txt", ".yaml", ".yml", ".json", ".csv") or "/" in spec):
        raise InputError(f"{spec}: no such {what} file")
    if not split_commas:
        return [text] if text else []
    return [s.strip() for s in text.split(",") if s.strip()]


def load_templates(spec: str | Path | Sequence[str] | None = None) -> list[str]:
    """Templates from a shipped set name, a file, an inline JSON list, one inline template, or a list;
    validated. An inline string is one template, commas and all (templates contain commas)."""
    if spec is None:
        spec = DEFAULT_TEMPLATES
    if isinstance(spec, (str, Path)) and str(spec) in template_sets():
        spec = TEMPLATE_DIR / f"{spec}.txt"
    templates = list(spec) if not isinstance(spec, (str, Path)) else _read_list(spec, "templates", split_commas=False)
    return validate_templates(templates)


def validate_templates(templates: Sequence[str]) -> list[str]:
    templates = [str(t) for t in templates]
    if not templates:
        raise InputError("no prompt templates given (need at least one, with {} where the class name goes)")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise InputError(f"template {bad[0]!r} has no {{}} to mark the class name ({len(bad)} such)")
    dupes = [t for i, t in enumerate(templates) if t in templates[:i]]
    if dupes:
        raise InputError(f"template {dupes[0]!r} is given twice")
    return templates


def load_classes(spec: str | Path | Sequence[str]) -> list[str]:
    """Class names from a file (one per line, or a YAML list), a comma list, an inline JSON list, or a list."""
    classnames = list(spec) if not isinstance(spec, (str, Path)) else _read_list(spec, "class names")
    return validate_classes(classnames)


def validate_classes(classnames: Sequence[str]) -> list[str]:
    classnames = [str(c).strip() for c in classnames]
    if len(classnames) < 2:
        raise InputError(f"zero-shot classification needs at least 2 classes, got {len(classnames)}")
    if any(not c for c in classnames):
        raise InputError("a class name is empty")
    if any("\n" in c or "\r" in c for c in classnames):
        raise InputError("a class name contains a line break")
    folded: dict[str, str] = {}
    for c in classnames:
        key = c.casefold()
        if key in folded:
            raise InputError(f"class {c!r} is given twice (as {folded[key]!r}; names are compared case-insensitively)")
        folded[key] = c
    return classnames
