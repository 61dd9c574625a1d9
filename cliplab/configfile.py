"""Reading the YAML files people edit (label sets, training configs) and checking their keys.

One place for what every such file needs: duplicate keys are an error with both line numbers
(PyYAML silently keeps the last one, so a second ``flagged:`` block would hide the first), and
an unknown key is an error that names the closest valid key ("did you mean ...").
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding the same key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (lines {seen[key]} and {line}); a key may appear once",
                key_node.start_mark)
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML text; a syntax error or a duplicate key is a one-line InputError naming ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as e:
        if str(e.problem).startswith("duplicate key"):
            raise InputError(f"{source}: {e.problem}") from None
        raise InputError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{source}: not valid YAML: {' '.join(str(e).split())}") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file (a BOM is allowed), with one-line errors for the usual failures."""
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} {p} not found") from None
    except IsADirectoryError:
        raise InputError(f"{what} {p} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping at the top of a YAML file ({} for an empty file); anything else is an InputError."""
    data = parse_yaml(read_text(path, what), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a mapping of key: value, got a {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(data: Mapping, allowed: Iterable[str], where: str, what: str = "key") -> None:
    """Raise InputError for the first key of ``data`` not in ``allowed``, naming the closest one."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise InputError(f"{where}: unknown {what} {key!r}{did_you_mean(key, allowed)}; "
                             f"valid {what}s: {', '.join(allowed)}")
