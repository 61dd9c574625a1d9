import json
import warnings

import numpy as np
import pandas as pd
import pytest

from cliplab.cli import main
from cliplab.embed import embed_texts
from cliplab.errors import EXIT_INPUT, InputError
from cliplab.synth import LEGACY_CLASSES as CLASSES  # the legacy world of the synth_data fixture
from cliplab.zeroshot import ZeroShotClassifier, ensemble, labels_to_indices, run_zeroshot, zeroshot_metrics


def test_metrics_match_hand_computed_values():
    logits = np.array([
        [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],   # true 0, pred 0
        [0.1, 0.9, 0.0, 0.0, 0.0, 0.0],   # true 0, pred 1 (0 is 2nd)
        [0.0, 0.0, 0.9, 0.1, 0.0, 0.0],   # true 2, pred 2
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # true 5, pred 0 (5 is last: not in top 5)
    ])
    y = np.array([0, 0, 2, 5])
    m = zeroshot_metrics(logits, y)
    assert m["acc1"] == pytest.approx(2 / 4)
    assert m["acc5"] == pytest.approx(3 / 4)
    # recall per class present: class 0: 1/2, class 2: 1/1, class 5: 0/1 -> mean 0.5
    assert m["mean_per_class_recall"] == pytest.approx(0.5)
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (6, 6) and cm[0, 0] == 1 and cm[0, 1] == 1 and cm[5, 0] == 1 and cm.sum() == 4


def test_ensemble_averages_normalised_prompts():
    t = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)  # class 0: e1, e2; class 1: e1, e1
    w = ensemble(t, n_classes=2, n_templates=2)
    np.testing.assert_allclose(w[:, 0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(w[:, 1], [1, 0], atol=1e-6)


def test_classifier_is_the_prompt_ensemble(tiny):
    templates = ["a photo of a {}.", "a drawing of a {}."]
    clf = ZeroShotClassifier.build(tiny, ["cat", "dog"], templates)
    cat = embed_texts(tiny, ["a photo of a cat.", "a drawing of a cat."]).mean(0)
    np.testing.assert_allclose(clf.weights[:, 0], cat / np.linalg.norm(cat), atol=1e-5)
    own = ZeroShotClassifier.build(tiny, ["cat", "dog"], templates, class_prompts={"dog": ["a puppy"]})
    np.testing.assert_allclose(own.weights[:, 1], embed_texts(tiny, ["a puppy"])[0], atol=1e-5)
    p = clf.predict(np.eye(128, dtype=np.float32)[:3], k=5)
    assert p.topk.shape == (3, 2) and np.allclose(p.probs.sum(1), 1, atol=1e-5)


def test_unknown_labels_are_an_error():
    assert labels_to_indices(["b", "a"], ["a", "b"]).tolist() == [1, 0]
    with pytest.raises(InputError, match="1 label value"):
        labels_to_indices(["a", "zebra"], ["a", "b"])


def test_run_zeroshot_end_to_end(tiny, synth_data, tmp_path):
    r = run_zeroshot(tiny, synth_data, CLASSES, "a photo of a person holding a {}.", cache_dir=tmp_path, progress=False)
    assert r.metrics["n_images"] == 192 and r.metrics["n_skipped"] == 0
    assert set(r.predictions.columns) >= {"path", "image", "label", "prediction", "correct", "top5", "probability"}
    assert r.metrics["acc1"] == pytest.approx(r.predictions["correct"].astype(float).mean())
    with pytest.raises(InputError, match="no label column 'species'"):
        run_zeroshot(tiny, synth_data, CLASSES, label_column="species", cache_dir=tmp_path, progress=False)


def test_cli_writes_metrics_and_predictions(synth_data, tmp_path, capsys):
    out = tmp_path / "zs"
    code = main(["zeroshot", "--model", "cliplab-tiny", "--random-init", "--device", "cpu", "--images", str(synth_data),
                 "--classes", ",".join(CLASSES), "--templates", "a photo of a person holding a {}.",
                 "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--quiet"])
    assert code == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"acc1", "acc5", "mean_per_class_recall", "n_images", "n_skipped"} <= set(m)
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == m["n_images"] == 192
    assert "acc1" in capsys.readouterr().out
    code = main(["zeroshot", "--model", "cliplab-tiny", "--random-init", "--images", str(synth_data),
                 "--classes", "cat", "--out", str(out)])
    assert code == EXIT_INPUT and "at least 2 classes" in capsys.readouterr().err


def test_mean_per_class_recall_and_confusion_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix

    rng = np.random.default_rng(0)
    for n_classes, n in ((7, 40), (30, 25), (2, 9)):  # 25 images of 30 classes: classes absent from y_true
        y, pred = rng.integers(0, n_classes, n), rng.integers(0, n_classes, n)
        m = zeroshot_metrics(np.eye(n_classes)[pred], y)
        with warnings.catch_warnings():  # sklearn warns of predicted classes absent from y_true
            warnings.simplefilter("ignore", UserWarning)
            expected = balanced_accuracy_score(y, pred)
        assert m["mean_per_class_recall"] == pytest.approx(expected, abs=1e-12)
        assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(n_classes)).tolist()


def test_labels_match_ignoring_case_and_spaces():
    from cliplab.zeroshot import fold_matches

    assert labels_to_indices([" Kite", "BOOK ", "kite"], ["kite", "book"]).tolist() == [0, 1, 0]
    assert fold_matches([" Kite", "BOOK ", "kite"], ["kite", "book"]) == {" Kite": "kite", "BOOK ": "book"}


def test_a_large_confusion_matrix_is_sparse_and_goes_to_a_sidecar(tiny, tmp_path):
    import scipy.sparse

    from cliplab.zeroshot import MAX_JSON_CLASSES, write_zeroshot

    n = MAX_JSON_CLASSES + 1
    m = zeroshot_metrics(np.eye(n)[[3, 3, 7]], np.array([3, 4, 7]))
    cm = m["confusion_matrix"]
    assert scipy.sparse.issparse(cm) and cm.shape == (n, n) and cm.nnz == 3 and cm[4, 3] == 1
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("image,label\na.png,class 0\na.png,class 1\n")
    r = run_zeroshot(tiny, tmp_path / "m.csv", [f"class {i}" for i in range(n)], cache_dir=None, progress=False)
    out = write_zeroshot(r, tmp_path / "out")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["confusion_matrix"] == "confusion_matrix.npz"
    assert set(saved["files"]) == {"predictions.csv", "skipped.csv", "confusion_matrix.npz"}
    assert scipy.sparse.load_npz(out / "confusion_matrix.npz").sum() == 2


def test_output_column_clashes_and_unlabelled_manifests_are_refused(tiny, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "p.csv").write_text("image,label,top5\na.png,cat,x\n")
    with pytest.raises(InputError, match="a column 'top5'"):
        run_zeroshot(tiny, tmp_path / "p.csv", ["cat", "dog"], cache_dir=None, progress=False)
    (tmp_path / "e.csv").write_text("image,label\na.png,\na.png,\n")
    with pytest.raises(InputError, match="empty in all 2 rows"):
        run_zeroshot(tiny, tmp_path / "e.csv", ["cat", "dog"], cache_dir=None, progress=False)
