"""``cliplab audit``: parses the audit options and calls cliplab.audit's run_audit / compare_label_sets.

Exit codes: 0 the audit completed (whatever it found); 3 bad input (label set, audit file,
manifest, metadata); 4 the model cannot be loaded, or has no weights and no --random-init;
5 the output cannot be written;
6 (``--fail-on-disparity T``) a detected disparity has |difference| >= T.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import EXIT_DISPARITY, EXIT_OK, InputError
from .common import (
    add_image_args,
    add_model_args,
    add_out_arg,
    add_where_arg,
    check_exists,
    check_model_args,
    embed_kwargs,
    load_model_from_args,
    report_input_notes,
    report_skips,
)

if TYPE_CHECKING:
    from ..audit.definition import AuditSpec

FORMATS = ("auto", "table", "fairface", "utkface", "celeba")  # = audit.metadata.FORMATS (not imported: fast --help)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit a zero-shot label set for demographic misclassification")
    add_audit_arguments(p)
    p.set_defaults(func=cmd_audit)


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    """Add every ``cliplab audit`` option to ``p`` (model and image options included)."""
    add_model_args(p)
    add_image_args(p, required=False)
    g = p.add_argument_group("audit")
    g.add_argument("--labels", required=True, help="audit definition: a YAML file (see audits/), a text file with one "
                   "class per line, or 'a,b,c'")
    g.add_argument("--compare", metavar="LABELS_B", help="a second label set to run on the same embeddings; "
                   "reports each group's change in flagged rates (label-set what-if)")
    g.add_argument("--metadata", help="attribute table joined to an image folder by file name: a CSV/Parquet, a "
                   "FairFace label CSV or CelebA's list_attr_celeba.txt")
    g.add_argument("--format", choices=FORMATS, default="auto", help="metadata format (default: detected; "
                   "utkface reads attributes from the file names of --images)")
    g.add_argument("--group-by", help="attribute columns to group by, 'a,b' (overrides the audit file)")
    g.add_argument("--templates", help="prompt templates (file, shipped set or 'a photo of a {}.'), overrides the file")
    g.add_argument("--flag", action="append", default=[], metavar="CATEGORY=CLASS[,CLASS]",
                   help="flag classes under a harm category (repeatable; adds to the audit file)")
    g.add_argument("--truth-column", help="metadata column holding each image's true class")
    g.add_argument("--reference", action="append", default=[], metavar="ATTRIBUTE=GROUP",
                   help="reference group of an attribute (default: --reference-mode)")
    add_where_arg(g)
    g.add_argument("--min-group-size", type=int, help="smaller groups are reported, not compared (default 30)")
    g.add_argument("--alpha", type=float, help="significance level after correction (default 0.05)")
    g.add_argument("--correction", choices=["holm", "fdr_bh", "bonferroni", "none"], help="default holm")
    g.add_argument("--top-k", type=int, help="k of the top-k flagged rates (default 5)")
    g.add_argument("--n-boot", type=int, help="bootstrap draws (default 2000)")
    g.add_argument("--seed", type=int, help="bootstrap seed (default 0)")
    g.add_argument("--query", action="append", default=[], help="text query for retrieval bias (repeatable)")
    g.add_argument("--thumbnails", type=int, default=12, help="example thumbnails in the report (default 12)")
    g.add_argument("--predictions-format", choices=["parquet", "csv"], default="parquet",
                   help="file format of the per-image predictions (default parquet)")
    g.add_argument("--fail-on-disparity", type=float, metavar="THRESHOLD",
                   help=f"exit with code {EXIT_DISPARITY} when a detected disparity has |difference| >= THRESHOLD "
                        "(a proportion, e.g. 0.1 = 10 points); for CI pipelines")
    add_out_arg(g, "report.html, metrics.json, groups.csv, ...", required=False)
    g.add_argument("--reference-mode", choices=["rest", "overall"], help="reference of attributes without a "
                   "--reference group: rest (the other images; default) or overall (all images)")
    g.add_argument("--template-variants", metavar="FILE|SET", help="rerun the audit once per template (a file, one "
                   "per line, or a shipped set such as openai-imagenet); writes wording.csv, marks fragile verdicts")
    g.add_argument("--label-variants", metavar="FILE", help="YAML {flagged class: [synonym, ...]}: rerun once per "
                   "synonym set; writes wording.csv")
    g.add_argument("--mitigate", choices=["projection"], help="rerun the audit with the attribute's directions "
                   "projected out of the text classifier (orthogonal and calibrated, Chuang et al. 2023) and report "
                   "each disparity and the accuracy before and after")
    g.add_argument("--mitigate-attribute", metavar="ATTRIBUTE", help="with --mitigate: the audited attribute to "
                   "remove (default: mitigation.attribute of the audit file)")
    g.add_argument("--mitigate-lambda", type=float, metavar="LAMBDA", help="with --mitigate: the calibration weight "
                   "(default: mitigation.lambda of the audit file, else 1000)")
    g.add_argument("--plan", type=float, metavar="DIFFERENCE", help="plan instead of audit: images per group "
                   "needed to detect a flagged-rate difference of DIFFERENCE (e.g. 0.05) with --plan-power")
    g.add_argument("--plan-groups", default="", metavar="ATTRIBUTE=N[,...]", help="with --plan: the number of "
                   "groups of each attribute, e.g. race=7,gender=2,age=9")
    g.add_argument("--plan-base-rate", type=float, default=0.05, help="with --plan: the reference rate (default 0.05)")
    g.add_argument("--plan-power", type=float, default=0.8, help="with --plan: the power (default 0.8)")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{what} expects NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def spec_from_args(args: argparse.Namespace, labels: str) -> AuditSpec:
    """The audit definition of ``labels`` with the command line's overrides applied."""
    from ..audit.definition import TruthSpec, load_audit_spec
    from ..data import parse_where
    from ..prompts import load_templates

    spec = load_audit_spec(labels)
    flagged = dict(spec.flagged)
    for item in args.flag:
        cat, classes = next(iter(_pairs([item], "--flag").items()))
        added = [c.strip() for c in classes.split(",") if c.strip()]
        flagged[cat] = tuple(dict.fromkeys([*flagged.get(cat, ()), *added]))
    where = parse_where(args.where)
    return spec.with_overrides(
        flagged=flagged if args.flag else None,
        templates=tuple(load_templates(args.templates)) if args.templates else None,
        group_by=tuple(c.strip() for c in args.group_by.split(",") if c.strip()) if args.group_by else None,
        truth=TruthSpec(column=args.truth_column) if args.truth_column else None,
        reference=dict(spec.reference) | _pairs(args.reference, "--reference") if args.reference else None,
        where=dict(spec.where) | where if where else None,
        reference_mode=args.reference_mode,
        min_group_size=args.min_group_size, alpha=args.alpha, correction=args.correction, top_k=args.top_k,
        n_boot=args.n_boot, seed=args.seed,
        retrieval_queries=tuple(spec.retrieval_queries) + tuple(args.query) if args.query else None)


def _load_wording(args: argparse.Namespace, spec: AuditSpec):
    """--template-variants / --label-variants read and checked before anything runs (or None)."""
    from ..audit.variants import load_label_variants, load_template_variants

    if not (args.template_variants or args.label_variants):
        return None
    return (load_template_variants(args.template_variants) if args.template_variants else None,
            load_label_variants(args.label_variants, spec) if args.label_variants else None)


def _wording(wording, loaded, prepared, out) -> None:
    """The audit once per wording: wording.csv and one line of summary."""
    from ..atomic import write_table
    from ..audit.variants import wording_robustness

    table = wording_robustness(loaded, prepared, *wording)
    write_table(out / "wording.csv", table)
    detected = table[table["detected"].fillna(False).astype(bool)]
    print(f"wording: {int(detected['fragile'].sum())} of {len(detected)} detected disparities are fragile "
          f"(not detected under every one of {1 + len(wording[0] or []) + len(wording[1] or [])} wordings); "
          "see wording.csv")


def plan_from_args(args: argparse.Namespace) -> int:
    """``cliplab audit --plan D``: print the images per group the audit needs (no model, no images)."""
    from ..audit.power import parse_groups, plan_audit

    plan = plan_audit(spec_from_args(args, args.labels), parse_groups(args.plan_groups), args.plan,
                      args.plan_base_rate, args.plan_power)
    print(f"images per group to detect +{100 * args.plan:.1f} pp over a {100 * args.plan_base_rate:.1f}% rate "
          f"with {100 * args.plan_power:.0f}% power ({int(plan['families'].iloc[0])} families):")
    print(plan.to_string(index=False))
    return EXIT_OK


def _check_mitigation(args: argparse.Namespace, spec: AuditSpec, records) -> None:
    """--mitigate's attribute and prompts checked on the audited rows before the model is loaded."""
    from ..audit.definition import select_rows
    from ..audit.mitigation import mitigation_prompts

    if not args.mitigate:
        if args.mitigate_attribute or args.mitigate_lambda is not None:
            raise InputError("--mitigate-attribute and --mitigate-lambda go with --mitigate projection")
        return
    if args.mitigate_lambda is not None and not args.mitigate_lambda >= 0:
        raise InputError(f"--mitigate-lambda must be 0 or more, got {args.mitigate_lambda}")
    mitigation_prompts(spec, records[select_rows(records, spec)], args.mitigate_attribute)


def cmd_audit(args: argparse.Namespace) -> int:
    """Run ``cliplab audit``: the audit (and the what-if), the report files, the summary, the exit code.

    Everything that can be checked without the model is checked before torch is imported.
    """
    if args.plan is not None:
        return plan_from_args(args)
    from ..audit import load_audit_images
    from ..data import check_where

    for option, value in (("--images", args.images), ("--out", args.out)):
        if not value:
            raise InputError(f"{option} is required (except with --plan)")
    if args.fail_on_disparity is not None and not 0 <= args.fail_on_disparity <= 1:
        raise InputError(f"--fail-on-disparity is a difference of rates between 0 and 1, got {args.fail_on_disparity}")
    check_model_args(args)
    check_exists(args.images, "--images")
    if args.metadata:
        check_exists(args.metadata, "--metadata")
    spec = spec_from_args(args, args.labels)
    spec_b = spec_from_args(args, args.compare) if args.compare else None
    wording = _load_wording(args, spec)
    images = load_audit_images(args.images, args.metadata, args.format, args.image_column)
    spec.check_columns(images.images.records.columns, images.images.source)
    check_where(images.images.records, spec.where, images.images.source)
    _check_mitigation(args, spec, images.images.records)
    from ..audit.mitigation import mitigate
    from ..audit.run import audit_loaded, compare_prepared, prepare_audit

    loaded = load_model_from_args(args)
    prepared = prepare_audit(loaded, images, spec, **embed_kwargs(args))
    result = audit_loaded(loaded, prepared)
    comparison = compare_prepared(loaded, prepared, result, spec_b) if spec_b is not None else None
    if args.mitigate:
        result.mitigation = mitigate(loaded, prepared, result, args.mitigate_attribute, args.mitigate_lambda)
    written = dict(thumbnails=args.thumbnails, predictions_format=args.predictions_format)
    report = result.write(args.out, **written) if comparison is None else comparison.write(args.out, **written)
    report_skips(result.skipped, report.parent)
    report_input_notes(result.data.duplicate_rows, sorted(loaded.truncated_texts))
    if wording is not None:
        _wording(wording, loaded, prepared, report.parent)
    print(result.summary())
    if comparison is not None:
        print(comparison.summary())
    print(f"report: {report}")
    if args.fail_on_disparity is not None:
        over = result.exceeding(args.fail_on_disparity)
        if len(over):
            print(f"cliplab: {len(over)} detected disparit{'y' if len(over) == 1 else 'ies'} with |difference| >= "
                  f"{args.fail_on_disparity} (exit code {EXIT_DISPARITY})", file=sys.stderr)
            return EXIT_DISPARITY
    return EXIT_OK
