"""cliplab.audit.run: the image side of an audit (prepare_audit) and its inputs."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from cliplab.audit.definition import load_audit_spec
from cliplab.audit.run import PreparedAudit, prepare_audit
from cliplab.data import ImageSet

AUDIT = {"name": "from-a-dict", "classes": ["kite", "thief"], "templates": ["a photo of a {}."],
         "flagged": {"crime-related": ["thief"]}, "group_by": ["age"]}


def _images() -> tuple[ImageSet, SimpleNamespace]:
    records = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "tone": ["dark", "light"] * 3,
                            "age": ["child", "adult", "adult"] * 2})
    emb = SimpleNamespace(features=np.eye(6, 4, dtype=np.float32), records=records, skipped=[])
    return ImageSet(records, "test"), emb


def test_load_audit_spec_takes_a_dict():
    spec = load_audit_spec(AUDIT)
    assert spec.name == "from-a-dict" and spec.flagged == {"crime-related": ("thief",)} and spec.group_by == ("age",)


def test_group_by_string_is_a_column_name_not_characters():
    images, emb = _images()
    prepared = prepare_audit(None, images, AUDIT, "tone", embeddings=emb)
    assert isinstance(prepared, PreparedAudit) and prepared.spec.group_by == ("tone",)
    assert prepare_audit(None, images, AUDIT, "tone, age", embeddings=emb).spec.group_by == ("tone", "age")
    assert prepare_audit(None, images, AUDIT, ["age", "tone"], embeddings=emb).spec.group_by == ("age", "tone")
    assert prepared.counts.n_selected == 6 and len(prepared.features) == 6
