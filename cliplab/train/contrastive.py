"""The training forward: each distinct caption of a batch is encoded once.

With a locked Hugging Face text tower (cliplab-minilm) it goes further: the tower's pooled output
of every distinct caption is computed once per run (eval mode, no gradient) and kept in memory,
so a step costs the image tower and the text projection only.

Repeated captions and the loss: the copies of a caption get bit-identical features (one encoding,
indexed), and then open_clip's ClipLoss (target: the diagonal) equals multi-positive InfoNCE (target:
uniform over all copies) in value and gradient: identical rows/columns of the logits make "my own
copy" and "any copy" the same target. So identical captions are positives, not negatives
(tests/test_minilm.py checks this against the multi-positive loss written out).
"""
from __future__ import annotations

from typing import TypeAlias, cast

import torch
import torch.nn.functional as F
from open_clip.hf_model import HFTextEncoder
from open_clip.model import CLIP, CustomTextCLIP
from torch import nn

from ..models import LoadedModel

ClipModel: TypeAlias = CLIP | CustomTextCLIP  # the open_clip models cliplab trains (cliplab-tiny, cliplab-minilm)


def clip_model(loaded: LoadedModel) -> ClipModel:
    """``loaded.model`` as the open_clip CLIP it is, for training code that uses its towers and temperature."""
    # load_model builds every model with open_clip.create_model_and_transforms; LoadedModel types it
    # nn.Module because inference code needs nothing more. No isinstance check: open_clip's other
    # CLIP variants (e.g. CoCa) share the interface training uses and are not refused today.
    return cast(ClipModel, loaded.model)


def locked_hf_tower(clip: nn.Module) -> HFTextEncoder | None:
    """The model's Hugging Face text tower when none of its transformer weights train, else None."""
    text = getattr(clip, "text", None)
    if not isinstance(text, HFTextEncoder):
        return None
    return None if any(p.requires_grad for p in text.transformer.parameters()) else text


def pooled_output(text: HFTextEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """HFTextEncoder.forward up to (not including) its projection: transformer + pooler.

    Trailing columns that are padding in every row are cut first: masked positions change neither
    the attention nor the pooling, and a short caption padded to the context costs several times its length.
    """
    mask = (tokens != text.config.pad_token_id).long()
    used = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
    tokens, mask = tokens[:, :used], mask[:, :used]
    return text.pooler(text.transformer(input_ids=tokens, attention_mask=mask), mask)


class TextFeatureCache:
    """Pooled outputs of a locked text tower, one per distinct token row, computed once in eval mode."""

    def __init__(self, text: HFTextEncoder, batch_size: int = 256):
        self.text, self.batch_size = text, batch_size
        self.store: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.store)

    @torch.no_grad()
    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """[len(tokens), width] pooled features; rows not seen before go through the tower now."""
        keys = [row.tobytes() for row in tokens.cpu().numpy()]
        new = list({k: i for i, k in enumerate(keys) if k not in self.store}.values())
        if new:
            was_training = self.text.transformer.training
            self.text.transformer.eval()  # no dropout: a locked tower's features are fixed
            try:
                pad = self.text.config.pad_token_id
                new.sort(key=lambda i: int((tokens[i] != pad).sum()))  # similar lengths batch together
                for start in range(0, len(new), self.batch_size):
                    rows = new[start:start + self.batch_size]
                    out = pooled_output(self.text, tokens[rows]).float()
                    for i, feature in zip(rows, out):
                        self.store[keys[i]] = feature
            finally:
                self.text.transformer.train(was_training)
        return torch.stack([self.store[k] for k in keys]).to(tokens.device)


class ContrastiveModel(nn.Module):
    """An open_clip model's forward for training; identical captions of a batch are encoded once.

    Deduplication gives the same features and gradients as encoding every caption (the copies
    are identical), at a fraction of the text tower's cost when captions repeat. ``text_cache``
    (for a locked HF tower) replaces the tower by its cached pooled output + the projection.
    """

    def __init__(self, clip: CLIP | CustomTextCLIP, dedupe_captions: bool = True,
                 text_cache: TextFeatureCache | None = None):
        super().__init__()
        self.clip, self.dedupe, self.text_cache = clip, dedupe_captions, text_cache

    def encode_text(self, text: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text features of token rows (open_clip's signature; unit norm by default, as training uses them)."""
        unique, inverse = torch.unique(text, dim=0, return_inverse=True)
        if self.text_cache is not None:
            features = self.text_cache.text.proj(self.text_cache.pooled(unique))
            return (F.normalize(features, dim=-1) if normalize else features)[inverse]
        if self.dedupe and len(unique) < len(text):
            return self.clip.encode_text(unique, normalize=normalize)[inverse]
        return self.clip.encode_text(text, normalize=normalize)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        text = self.encode_text(tokens)
        image = self.clip.encode_image(images, normalize=True)
        return image, text, self.clip.logit_scale.exp(), getattr(self.clip, "logit_bias", None)
