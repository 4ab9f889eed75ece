"""The sweep writes the model-size law's figure next to the learning curve's, when the law is fitted."""

from __future__ import annotations

import json

import pytest

from lightning_scaling.sweep.result import MODEL_SIZE_FIGURE, SweepResult
from lightning_scaling.sweep.store import SweepStore

pytest.importorskip("matplotlib")


def _records(grow: bool) -> list[dict]:
    """Widths 8/16/32 at four sizes; the best width doubles with the data (``grow``) or is always 32."""
    recs = []
    for i, m in enumerate((100, 400, 1600, 6400)):
        for width in (8, 16, 32):
            best = 8 * 2 ** min(i, 2) if grow else 32
            err = m**-0.5 * (1 + 0.3 * abs(width - best) / best)
            recs.append({"run_id": f"m{m}_w{width}", "status": "ok", "size": m, "train_size": m, "seed": 0,
                         "params": {"width": width}, "trainable_params": 100 * width, "best_value": err})
    return recs


def test_model_size_figure_is_written_beside_the_learning_curve(tmp_path):
    result = SweepResult.from_records(_records(grow=True), monitor="err", mode="min", bootstrap=50)
    assert result.model_size_law is not None
    result.save(tmp_path)
    store = SweepStore(tmp_path)
    assert store.figure_path.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / MODEL_SIZE_FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert json.loads(store.result_path.read_text())["model_size_law"]["beta_p"] > 0


def test_no_model_size_figure_without_a_model_size_law(tmp_path):
    result = SweepResult.from_records(_records(grow=False), monitor="err", mode="min", bootstrap=50)
    assert result.model_size_law is None and result.model_size_figure() is None
    result.save(tmp_path)
    assert SweepStore(tmp_path).figure_path.exists()
    assert not (tmp_path / MODEL_SIZE_FIGURE).exists()
