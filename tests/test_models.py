import json
import os
import pickle
import time

import open_clip
import pytest
import torch

from cliplab.cli import main
from cliplab.errors import EXIT_MODEL, ModelError
from cliplab.models import OPEN_CLIP_CONFIG, load_model, select_device, tiny_model_names


def test_tiny_architectures_registered_with_open_clip():
    assert "cliplab-tiny" in tiny_model_names()
    assert "cliplab-tiny" in open_clip.list_models()


def test_random_init_is_seeded(tiny):
    again = load_model("cliplab-tiny", device="cpu", seed=0)
    other = load_model("cliplab-tiny", device="cpu", seed=1)
    p0, p1, p2 = (next(m.model.parameters()) for m in (tiny, again, other))
    assert torch.equal(p0, p1) and not torch.equal(p0, p2)
    assert tiny.identity == "cliplab-tiny@random-seed0" != other.identity
    assert tiny.tokenizer(["a cat"]).shape == (1, 32)


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="unknown device"):
        select_device("tpu:7")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            select_device("cuda")


def test_local_state_dict_file(tiny, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(tiny.model.state_dict(), path)
    loaded = load_model("cliplab-tiny", str(path), device="cpu", seed=5)
    for a, b in zip(tiny.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.identity.startswith("cliplab-tiny@") and "random" not in loaded.identity
    torch.save({k: v + 1 for k, v in tiny.model.state_dict().items()}, path)
    assert load_model("cliplab-tiny", str(path), device="cpu").identity != loaded.identity


def test_open_clip_train_checkpoint_with_module_prefix(tiny, tmp_path):
    path = tmp_path / "epoch_1.pt"
    sd = {f"module.{k}": v for k, v in tiny.model.state_dict().items()}
    torch.save({"epoch": 1, "name": "x", "state_dict": sd, "optimizer": {}}, path)
    loaded = load_model("cliplab-tiny", str(path), device="cpu", seed=9)
    assert torch.equal(loaded.model.logit_scale, tiny.model.logit_scale)
    assert torch.equal(next(loaded.model.parameters()), next(tiny.model.parameters()))


def test_local_dir_and_folder_as_pretrained(tiny, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = open_clip.get_model_config("cliplab-tiny")
    (folder / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_name": "cliplab-tiny", "model_cfg": cfg}))
    torch.save(tiny.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    for loaded in (load_model(f"local-dir:{folder}", device="cpu"), load_model(None, str(folder), device="cpu")):
        assert loaded.name == "cliplab-tiny"
        assert torch.equal(next(loaded.model.parameters()), next(tiny.model.parameters()))
    with pytest.raises(ModelError, match="does not match"):
        load_model("ViT-B-32", str(folder), device="cpu")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": _Evil()}, protocol=2))
    with pytest.raises(ModelError, match=r"asks to run code .*posix.system.*weights_only=True"):
        load_model("cliplab-tiny", str(path), device="cpu")
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_truncated_and_foreign_checkpoints(tiny, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(tiny.model.state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"cannot read checkpoint|cannot load"):
        load_model("cliplab-tiny", str(cut), device="cpu")
    with pytest.raises(ModelError, match="does not fit architecture cliplab-tiny-64"):
        load_model("cliplab-tiny-64", str(good), device="cpu")


def test_unknown_names():
    with pytest.raises(ModelError, match="unknown model architecture"):
        load_model("ViT-Q-99", device="cpu")
    with pytest.raises(ModelError, match=r"tags: .*openai"):
        load_model("ViT-B-32", "not-a-tag", device="cpu")
    with pytest.raises(ModelError, match="no model architecture"):
        load_model(None, None)


@pytest.mark.parametrize("args", [("ViT-B-32", "laion2b_s34b_b79k"), ("hf-hub:timm/ViT-B-32-quickgelu.openai", None)])
def test_offline_fails_fast_and_clearly(args, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_model(*args, device="cpu")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "--pretrained PATH" in msg and "\n" not in msg


def test_offline_cli_exit_code_and_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "one.png")  # the images are checked before the model is loaded
    code = main(["embed", "--model", "ViT-B-32", "--pretrained", "openai", "--images", str(tmp_path),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == EXIT_MODEL
    assert err.startswith("cliplab: error: cannot fetch pretrained weights ViT-B-32 'openai'")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open an internet connection fails the test (local unix sockets are fine)."""
    import socket

    attempts = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(original):
        def checked(self, address, *a, **k):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(address)
                raise AssertionError(f"network connection attempted: {address}")
            return original(self, address, *a, **k)
        return checked

    monkeypatch.setattr(socket.socket, "connect", guard(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(connect_ex))
    return attempts


def test_local_files_never_touch_the_network(no_network, tiny, synth_data, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(tiny.model.state_dict(), path)
    code = main(["zeroshot", "--model", "cliplab-tiny", "--pretrained", str(path), "--images", str(synth_data),
                 "--classes", "kite,guitar,book,flower,ball,cup,key,phone", "--cache-dir", str(tmp_path / "c"),
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 0 and no_network == []


def test_hf_hub_offline_tries_nothing(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for args in (("ViT-B-32", "openai"), ("hf-hub:timm/ViT-B-32-quickgelu.openai", None)):
        with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
            load_model(*args, device="cpu")
    assert no_network == []


def test_devices_the_machine_cannot_use_are_named():
    with pytest.raises(ModelError, match="cannot run a model here"):
        select_device("meta")
    if not torch.backends.mps.is_available():
        with pytest.raises(ModelError, match="MPS is not available"):
            select_device("mps")
    with pytest.raises(ModelError, match="CUDA"):
        select_device(f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}")


@pytest.mark.parametrize("spec", ["hf-hub:", "hf-hub:../../x", "hf-hub:owner/../x", "hf-hub:/abs"])
def test_bad_hub_ids_are_refused_before_the_hub_client(spec):
    with pytest.raises(ModelError, match="not a Hugging Face repository id"):
        load_model(spec, device="cpu")


@pytest.mark.parametrize("config, msg", [('{"model_name": ', "not valid JSON"), ('["x"]', "got a JSON list"),
                                         ('{"model_name": "cliplab-tiny"}', "without one")])
def test_broken_local_dir_configs(tiny, tmp_path, config, msg):
    (tmp_path / OPEN_CLIP_CONFIG).write_text(config)
    torch.save(tiny.model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(ModelError, match=msg):
        load_model(f"local-dir:{tmp_path}", device="cpu")
    with pytest.raises(ModelError, match=msg):
        load_model(pretrained=str(tmp_path), device="cpu")


def test_a_train_checkpoint_loads_as_pretrained(tiny, tmp_path):
    state = {"model": tiny.model.state_dict(), "optimizer": {}, "step": 1, "config": {"model": "cliplab-tiny"}}
    torch.save(state, tmp_path / "step_00000001.pt")
    loaded = load_model("cliplab-tiny", str(tmp_path / "step_00000001.pt"), device="cpu")
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
    with pytest.raises(ModelError, match="pass --model cliplab-tiny"):
        load_model("cliplab-tiny-64", str(tmp_path / "step_00000001.pt"), device="cpu")


def test_a_zip_bomb_is_refused_from_its_directory(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as z, \
            z.open("archive/data.pkl", "w", force_zip64=True) as f:
        for _ in range(70):
            f.write(bytes(1 << 20))
    with pytest.raises(ModelError, match="inflates from"):
        load_model("cliplab-tiny", str(tmp_path / "bomb.pt"), device="cpu")


def test_a_cached_pretrained_tag_loads_with_the_tags_preprocessing(tiny, tmp_path, monkeypatch):
    """The pretrained-tag path end to end, offline: a registry entry whose weights are 'cached'
    locally (here: a cliplab-tiny state dict) loads, and the tag's mean/std reach the transform."""
    import cliplab.models as models

    weights = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(tiny.model.state_dict(), weights)
    tag = {"mean": (0.25, 0.5, 0.75), "std": (0.2, 0.3, 0.4), "interpolation": "bicubic", "quick_gelu": False}
    monkeypatch.setattr(models.open_clip, "get_pretrained_cfg", lambda name, t: tag if t == "cached-tag" else {})
    monkeypatch.setattr(models, "_fetch_tag", lambda name, t, cfg: str(weights))
    loaded = load_model("cliplab-tiny", "cached-tag", device="cpu")
    assert loaded.identity.startswith("cliplab-tiny@") and not loaded.random_init
    norm = next(t for t in loaded.preprocess.transforms if type(t).__name__ == "Normalize")
    assert tuple(norm.mean) == tag["mean"] and tuple(norm.std) == tag["std"]
    for a, b in zip(loaded.model.state_dict().values(), tiny.model.state_dict().values()):
        assert torch.equal(a, b)
