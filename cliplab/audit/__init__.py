"""Bias audits of zero-shot CLIP classifiers: who gets put into harmful classes, and how often.

The CLIP paper's FairFace probe as a reusable, configurable audit: a label set with flagged
(harmful) classes, images with attribute metadata, per-group rates with intervals, disparities
with exact tests and multiple-comparison correction, label-set what-ifs, and shareable reports.
See docs/audit.md.

    from cliplab import load_model
    from cliplab.audit import run_audit
    result = run_audit(load_model(pretrained="runs/tiny"), "data/metadata.csv", "audits/synthetic.yaml")
    result.detected()           # the disparities that the statistics support
    result.not_detected()       # the rest, each with the smallest difference it could have detected
    result.by_group()           # rates per group, one column per harm category
    result.write("audit-out")   # report.html, metrics.json, groups.csv, predictions.parquet

Layers (each module imports only those below it, also inside functions; tests/audit/test_layers.py):
1. ``sections`` (truth, derived groupings, mitigation prompts), ``definition`` (the label set),
   ``metadata`` (images and their attribute metadata);
2. ``stats``, ``metrics``, ``disparities``, ``retrieval``, ``power`` (the numbers);
3. ``text``, ``report`` (names the page imports), ``mitigation_report``, ``html``, ``outputs``
   (terminal text, the page, files; they read results by their fields, so the result's
   ``summary()`` / ``write()`` can call them);
4. ``result``; 5. ``compare`` (two results, pure); 6. ``run`` (orchestration: ``run_audit``,
   ``compare_label_sets``); 7. ``variants`` (wording) and ``mitigation`` (the projection check);
   ``cli_args`` on top.

Names are imported on first use, so `cliplab audit --help` does not load scipy and statsmodels.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "metadata": ["AuditImages", "load_audit_images"],
    "compare": ["AuditComparison", "compare_audits"],
    "definition": ["AuditSpec", "ClassSpec", "load_audit_spec"],
    "sections": ["DerivedGrouping", "MitigationSpec", "TruthSpec"],
    "mitigation": ["MitigationResult", "mitigate", "mitigate_features"],
    "outputs": ["write_report"],
    "power": ["plan_audit"],
    "result": ["AuditCounts", "AuditResult"],
    "variants": ["wording_robustness"],
    "run": ["PreparedAudit", "audit_features", "audit_loaded", "compare_label_sets", "prepare_audit", "run_audit"],
}
__getattr__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_names)


def __dir__():
    return __all__
