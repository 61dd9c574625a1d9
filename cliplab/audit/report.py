"""The names the report page (cliplab.audit.html) and older code import from here.

The outputs now live in one module each: :mod:`.text` (terminal text), :mod:`.outputs` (files,
metrics.json) and :mod:`.html` (the page); the rules in :mod:`.disparities`. This module only
re-exports the rule texts and the percentage format, and imports no output module that imports
the page, so ``html`` may import it without a cycle.
"""
from .disparities import FLAG_RULE, REFERENCE_RULE
from .text import pct

__all__ = ["FLAG_RULE", "REFERENCE_RULE", "pct"]
