"""Evaluation during training: its torch metrics are cliplab.zeroshot's definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplab.train.evaluate import topk_metrics
from cliplab.zeroshot import zeroshot_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_metrics_match_zeroshot_metrics(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 7, generator=gen).round(decimals=1)  # rounding makes ties, broken stably
    y = torch.randint(0, 6, (200,), generator=gen)  # class 6 never occurs: recall averages present classes
    ours = topk_metrics(logits, y, k=5)
    ref = zeroshot_metrics(logits, np.asarray(y), k=5)
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
