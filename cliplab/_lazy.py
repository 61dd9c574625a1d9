"""Lazy exports for a package's ``__init__``: names are imported from their modules on first use.

This keeps ``import cliplab`` (and the CLI's ``--help``) fast: torch, plotly, scipy load only when
a name that needs them is used. Python's module ``__getattr__`` (PEP 562) does the work.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, list[str]], subpackages: Iterable[str] = ()
                 ) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, names)`` for ``package``: ``exports`` maps a submodule to the names it defines."""
    where = {name: module for module, names in exports.items() for name in names}
    subs = set(subpackages)

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(import_module(f".{where[name]}", package), name)
        elif name in subs:
            value = import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # the next use is a plain attribute
        return value

    return __getattr__, [*where, *sorted(subs)]
