"""The notebooks in notebooks/: stored without outputs, and each runs top to bottom (nbclient, headless).

Each test stands alone, in any order: 01 runs in an empty working folder (it makes the data and trains);
02-04 run in a folder that a fixture prepares with ``cliplab.demo`` (the same data and short run that
``cliplab.demo.workspace()`` makes). Settings are shortened through the CLIPLAB_NB_* variables.
Executed copies go to test-artifacts/notebooks/ for inspection.
"""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_train_and_load", "02_prompt_sensitivity", "03_embedding_geometry", "04_bias_audit",
             "05_robustness_and_probes"]
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
# What the notebooks use from `import cliplab` (names, and subpackages reached as attributes).
REQUIRED = ["demo", "synthesize", "SynthConfig", "read_images", "ImageSet", "load_model", "embed_images", "embed_texts",
            "run_zeroshot", "ZeroShotClassifier", "prompt_sensitivity", "PromptLab", "modality_gap", "alignment",
            "uniformity", "effective_rank", "class_centroid_similarity", "project", "EmbeddingExplorer",
            "AuditDashboard", "train", "audit", "read_eval_set", "run_probes", "ProbeConfig", "RobustnessConfig",
            "run_robustness", "write_probe", "write_robustness"]
SHORT_RUN = {"CLIPLAB_NB_IMAGES": "800", "CLIPLAB_NB_EPOCHS": "3"}


def _read(name: str):
    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
    book = _read(name)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_public_api_has_what_the_notebooks_use():
    import cliplab

    missing = [n for n in REQUIRED if not hasattr(cliplab, n)]
    assert not missing, f"cliplab/__init__.py must export {missing} (the notebooks use them)"


def _environment(mp: pytest.MonkeyPatch, root: Path) -> None:
    env = {**SHORT_RUN, "CLIPLAB_NB_WORKDIR": str(root / "work"), "CLIPLAB_CACHE": str(root / "cache"),
           "CLIPLAB_NB_TRAIN_CONFIG": str(ROOT / "training" / "configs" / "minilm-synthetic.yaml"),
           "CLIPLAB_NB_PROJECTION": "pca"}
    for key, value in env.items():
        mp.setenv(key, value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A working folder with the demo's data and a finished short run (made once, by cliplab.demo)."""
    from cliplab import demo

    root = tmp_path_factory.mktemp("prepared")
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, root)
        demo.demo_run(demo.workdir())
        yield root


@pytest.fixture
def empty(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, tmp_path)
        yield tmp_path


def test_01_trains_in_an_empty_folder(empty):
    from cliplab import demo

    _run("01_train_and_load", empty)
    assert (empty / "work" / demo.RUN_NAME / "final").is_dir()


@pytest.mark.parametrize("name", NOTEBOOKS[1:])
def test_runs_top_to_bottom(name, prepared):
    _run(name, prepared)


def _run(name: str, workdir: Path) -> None:
    book = _read(name)
    client = nbclient.NotebookClient(book, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(book, ARTIFACTS / f"{name}.ipynb")
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    stderr = [o.text for c in book.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    assert not any("epoch" in t for t in stderr), "the training log is shown as a warning (stderr)"
