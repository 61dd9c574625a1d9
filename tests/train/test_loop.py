"""The training loop: a short run end to end, and the parts that are easy to get subtly wrong."""
from __future__ import annotations

import csv
import math
import shutil

import open_clip
import pytest
import torch

from cliplab.train import train
from cliplab.train.build import CosineSchedule, build_optimizer, no_weight_decay
from cliplab.train.config import TrainConfig
from cliplab.train.contrastive import ContrastiveModel


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_short_run_writes_model_logs_and_metrics(train_data, tmp_path, tiny_config):
    run = tmp_path / "run"
    result = train(tiny_config(train_data, run, epochs=2, tensorboard="true", checkpoint_every=3,
                               keep_checkpoints=2))
    assert result.steps == 8 and result.n_train == 128  # 128 train images / 32 = 4 steps x 2 epochs
    for name in ("config.yaml", "metrics.csv", "train.log", "final/open_clip_config.json",
                 "final/open_clip_pytorch_model.bin"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("step_*.pt"))) == 2  # keeps the last 2 of steps 3, 4, 6, 8
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    rows = read_rows(run / "metrics.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(1, 9))
    evaluated = [r for r in rows if r["zeroshot_acc1"]]
    assert [int(r["step"]) for r in evaluated] == [4, 8]  # each epoch end
    for key in ("zeroshot_acc1", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert max(float(r["logit_scale"]) for r in rows) <= 100.0 + 1e-4


def test_dedupe_captions_gives_the_same_loss_and_gradients(tiny):
    torch.manual_seed(0)
    images = torch.randn(12, 3, 32, 32)
    tokens = tiny.tokenizer([f"a photo of a {c}." for c in ["cup", "key", "cup", "ball"] * 3])
    loss_fn = open_clip.ClipLoss()
    grads = []
    for dedupe in (False, True):
        tiny.model.zero_grad()
        img, txt, scale, _ = ContrastiveModel(tiny.model, dedupe)(images, tokens)
        loss = loss_fn(img, txt, scale)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in tiny.model.named_parameters()
                                      if p.grad is not None}))
    tiny.model.zero_grad()
    (l0, g0), (l1, g1) = grads
    assert torch.allclose(l0, l1, atol=1e-6)
    assert g0.keys() == g1.keys()
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-6, rtol=1e-4), n


def test_weight_decay_groups(tiny):
    opt = build_optimizer(tiny.model, TrainConfig(weight_decay=0.2), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in tiny.model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"logit_scale", "token_embedding.weight", "positional_embedding", "visual.class_embedding",
            "ln_final.weight", "ln_final.bias"} <= skipped
    assert all(not no_weight_decay(names[id(p)], p) for p in decay["params"])
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in {names[id(p)] for p in decay["params"]}


def test_cosine_schedule_with_warmup():
    s = CosineSchedule(total=110, warmup=10, min_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


def test_logit_scale_is_clamped_at_100(train_data, tmp_path, monkeypatch, tiny_config):
    from cliplab.train import build

    real = build.build_model

    def hot_start(cfg, device):
        loaded = real(cfg, device)
        loaded.model.logit_scale.data.fill_(8.0)  # exp(8) ~ 2981
        return loaded

    monkeypatch.setattr("cliplab.train.loop.build_model", hot_start)
    result = train(tiny_config(train_data, tmp_path / "run", eval_every=0))
    assert result.metrics["logit_scale"] <= 100.0 + 1e-3


def test_caption_folder_decoded_from_files(train_data, tmp_path, tiny_config):
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, img in enumerate(sorted((train_data.parent / "images" / "train").glob("*.png"))[:36]):
        shutil.copy(img, folder / f"{i}.png")
        if i < 34:
            (folder / f"{i}.txt").write_text(f"a photo of item {i % 4}\n")
    (folder / "35.txt").write_text("  \n")  # empty caption; 34.png has no caption file
    result = train(tiny_config(folder, tmp_path / "run", cache="none", batch_size=16))
    assert result.n_train == 34 and result.n_skipped == 2 and result.steps == 2
    skipped = read_rows(tmp_path / "run" / "skipped.csv")
    assert sorted(r["reason"] for r in skipped) == ["empty caption", "no caption file (.txt with the same name)"]


def test_webdataset_shards(train_data, tmp_path, tiny_config):
    import webdataset as wds

    images = sorted((train_data.parent / "images" / "train").glob("*.png"))[:64]
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / f"shard-{shard}.tar")) as sink:
            for i, img in enumerate(images[shard::2]):
                sink.write({"__key__": f"{shard}-{i:04d}", "png": img.read_bytes(), "txt": f"caption {i % 3}"})
    result = train(tiny_config(str(tmp_path / "shard-{0..1}.tar"), tmp_path / "run", batch_size=16,
                               train_num_samples=64))
    assert result.steps == 4 and (tmp_path / "run" / "final" / "open_clip_pytorch_model.bin").is_file()


def test_bf16_autocast_on_cpu(train_data, tmp_path, tiny_config):
    result = train(tiny_config(train_data, tmp_path / "run", precision="amp_bf16", eval_every=0))
    assert result.steps == 4 and math.isfinite(result.metrics["loss"])


def test_finetune_with_locked_image_tower(trained_run, train_data, tmp_path, tiny_config):
    """LiT from a pretrained file: the image tower stays as loaded, the text tower learns."""
    weights = trained_run / "final" / "open_clip_pytorch_model.bin"
    run = tmp_path / "run"
    train(tiny_config(train_data, run, pretrained=weights, lock_image="true", grad_checkpointing="true",
                      lr="1e-3", eval_every=0))
    before = torch.load(weights, weights_only=True)
    after = torch.load(run / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    assert not torch.equal(before["text_projection"], after["text_projection"])


def test_siglip_loss_run_exports_a_loadable_model(train_data, tmp_path, tiny_config):
    from cliplab.models import load_model

    run = tmp_path / "run"
    train(tiny_config(train_data, run, loss="siglip", eval_every=0))
    loaded = load_model(pretrained=str(run), device="cpu")
    saved = torch.load(run / "final" / "open_clip_pytorch_model.bin", weights_only=True)
    assert loaded.model.logit_bias is not None
    assert torch.equal(loaded.model.logit_bias.detach(), saved["logit_bias"])


def test_gradient_accumulation_counts_optimizer_steps(train_data, tmp_path, tiny_config):
    result = train(tiny_config(train_data, tmp_path / "run", batch_size=16, accum_steps=2, eval_every=0))
    assert result.steps == 4  # 128 / 16 = 8 micro-batches = 4 optimizer steps
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
