"""Jupyter widgets (ipywidgets + plotly FigureWidget): PromptLab, EmbeddingExplorer, AuditDashboard.

Importing this package does not import ipywidgets or plotly; each widget class does, on first
use, so ``import cliplab`` stays light and works without the notebook extras installed.
"""
from __future__ import annotations

from typing import Any

__all__ = ["AuditDashboard", "EmbeddingExplorer", "PromptLab"]

_WHERE = {"PromptLab": ".prompt_lab", "EmbeddingExplorer": ".explorer", "AuditDashboard": ".audit_dashboard"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
