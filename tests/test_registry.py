"""cliplab.registry reads open_clip's registry from its files exactly as open_clip builds it."""
from __future__ import annotations

import pytest

from cliplab import registry
from cliplab.errors import ModelError


def test_the_registry_read_from_files_is_open_clips_own():
    import open_clip

    import cliplab.models  # noqa: F401  registers cliplab's architectures with open_clip

    tags: dict[str, list[str]] = {}
    for name, tag in open_clip.list_pretrained():
        tags.setdefault(name, []).append(tag)
    assert registry.pretrained_tags() == tags
    assert registry.architectures() == open_clip.list_models()
    assert set(registry.tiny_model_names()) <= set(registry.architectures())


@pytest.mark.parametrize("model, pretrained, message", [
    (None, None, "no model architecture given"),
    (None, "runs/nope", "no such file, run directory or pretrained tag"),
    ("ViT-B-32", "laion2b", "pretrained tag of ViT-B-32"),
    ("ViT-B32", None, "did you mean 'ViT-B-32'"),
])
def test_check_model_source_refuses(model, pretrained, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(")):
        registry.check_model_source(model, pretrained)


def test_check_model_source_accepts(tmp_path):
    registry.check_model_source("ViT-B-32", "LAION2B-S34B-B79K")  # open_clip normalises tags the same way
    registry.check_model_source("cliplab-tiny", None)
    registry.check_model_source(None, str(tmp_path))  # a folder: load_model looks inside
    registry.check_model_source("hf-hub:org/name", None)
    assert registry.is_random_init("cliplab-tiny", None) and not registry.is_random_init("hf-hub:a/b", None)
