"""Jupyter widgets (ipywidgets + plotly FigureWidget): PromptLab, EmbeddingExplorer, AuditDashboard.

Importing this package does not import ipywidgets or plotly; each widget class does, on first
use, so ``import cliplab`` stays light and works without the notebook extras installed.
"""
from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__, {"prompt_lab": ["PromptLab"], "explorer": ["EmbeddingExplorer"], "audit_dashboard": ["AuditDashboard"]})
