"""cliplab: train, load, probe and audit CLIP models (on open_clip_torch).

The public API; everything the CLI and the notebooks do goes through these names.
Names are imported on first use, so ``import cliplab`` (and the CLI's --help) stays fast.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cliplab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

from ._lazy import lazy_exports

_EXPORTS = {
    "audit": ["AuditResult", "AuditSpec", "AuditComparison", "run_audit", "compare_label_sets", "compare_audits",
              "load_audit_spec"],
    "errors": ["CliplabError", "InputError", "ModelError", "OutputError"],
    "corruptions": ["corrupt", "corrupt_images", "corruption_names"],
    "data": ["ImageSet", "Skip", "load_image", "read_images"],
    "baseline_fit": ["Evaluation", "EffectiveRobustness", "effective_robustness", "fit_baseline"],
    "evalsets": ["EvalImageSet", "read_eval_set", "subset_classes", "write_wds", "write_clip_benchmark_json"],
    "embed": ["ImageEmbeddings", "embed_images", "embed_texts", "write_embeddings"],
    "geometry": ["Projection", "project", "place", "modality_gap", "alignment", "uniformity", "effective_rank",
                 "class_centroid_similarity", "embedding_diagnostics"],
    "models": ["LoadedModel", "load_model", "select_device"],
    "probe": ["ProbeConfig", "ProbeResult", "LinearProbe", "fit_probe", "run_probes", "write_probe"],
    "prompts": ["load_classes", "load_templates"],
    "robustness": ["RobustnessConfig", "RobustnessResult", "run_robustness", "write_robustness",
                   "probe_image_sets"],
    "sensitivity": ["PromptScorer", "SensitivityResult", "prompt_sensitivity"],
    "synth": ["SynthConfig", "synthesize"],
    "train": ["TrainConfig", "load_train_config"],  # train() itself: cliplab.train.train (a subpackage)
    "widgets": ["PromptLab", "EmbeddingExplorer", "AuditDashboard"],
    "zeroshot": ["ZeroShotClassifier", "ZeroShotResult", "run_zeroshot", "write_zeroshot", "zeroshot_metrics"],
}
_SUBPACKAGES = {"audit", "demo", "train", "widgets"}  # cliplab.train.train(...) etc. after `import cliplab`
__getattr__, _names = lazy_exports(__name__, _EXPORTS, _SUBPACKAGES)
__all__ = ["__version__", *_names]


def __dir__():
    return sorted(__all__)
