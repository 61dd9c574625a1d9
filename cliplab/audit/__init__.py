"""Bias audits of zero-shot CLIP classifiers: who gets put into harmful classes, and how often.

The CLIP paper's FairFace probe as a reusable, configurable audit: a label set with flagged
(harmful) classes, images with attribute metadata, per-group rates with intervals, disparities
with exact tests and multiple-comparison correction, label-set what-ifs, and shareable reports.

    from cliplab import load_model
    from cliplab.audit import run_audit
    result = run_audit(load_model(pretrained="runs/tiny"), "data/metadata.csv", "audits/synthetic.yaml")
    result.flagged()            # the disparities that the statistics support
    result.by_group()           # rates per group, one column per harm category
    result.write("audit-out")   # report.html, metrics.json, groups.csv, predictions.parquet
"""
from .adapters import AuditImages, load_audit_images
from .compare import AuditComparison, compare_audits, compare_label_sets
from .definition import AuditSpec, ClassSpec, TruthSpec, load_audit_spec
from .report import write_report
from .result import AuditResult
from .run import audit_features, audit_loaded, prepare_audit, run_audit

__all__ = ["AuditComparison", "AuditImages", "AuditResult", "AuditSpec", "ClassSpec", "TruthSpec", "audit_features",
           "audit_loaded", "compare_audits", "compare_label_sets", "load_audit_images", "load_audit_spec",
           "prepare_audit", "run_audit", "write_report"]
