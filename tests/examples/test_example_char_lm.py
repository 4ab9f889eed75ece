"""The character-level language-model example (examples/char_lm/train.py): its data, and its smoke study.

The data tests import the example file itself and build its data module from a small local text
file (the ``--text-file`` path users take for their own corpus); no network is used anywhere. The
slow test runs ``train.py --smoke`` as a user would, in a subprocess with a timeout.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "examples" / "char_lm" / "train.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("char_lm_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    # 200 distinct lines; the character "~" appears only in the last lines, which are held out
    lines = [f"line {i:03d}: the quick brown fox jumps over the lazy dog.\n" for i in range(190)]
    lines += [f"line {i:03d}: held-out text with a tilde ~ in it.\n" for i in range(190, 200)]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_text_file_split_is_disjoint_at_line_boundaries_and_holds_out_the_end(example, corpus):
    dm = example.build_datamodule(example.parse_args(["--text-file", str(corpus)]))
    text = corpus.read_text(encoding="utf-8")
    assert dm.train_text + dm.val_text == text  # a partition of the file, in order
    train_lines, val_lines = dm.train_text.splitlines(), dm.val_text.splitlines()
    assert not set(train_lines) & set(val_lines)
    assert val_lines[-1] == text.splitlines()[-1]
    # the trailing lines that make up 10% of the characters, and not one line more
    assert 0.1 * len(text) <= len(dm.val_text) < 0.1 * len(text) + len(val_lines[0]) + 1


def test_vocabulary_is_the_training_characters_plus_unk(example, corpus):
    dm = example.build_datamodule(example.parse_args(["--text-file", str(corpus)]))
    assert dm.vocab == ["<unk>", *sorted(set(dm.train_text))]
    assert "~" not in dm.vocab and "~" in dm.val_text
    encoded = dm.encode("fox~")
    assert encoded.tolist() == [dm.stoi["f"], dm.stoi["o"], dm.stoi["x"], 0]  # unseen characters map to <unk>


def test_training_chunks_are_fixed_length_shifted_windows_measured_in_characters(example, corpus):
    dm = example.build_datamodule(example.parse_args(["--text-file", str(corpus)]))
    dm.setup("fit")
    seq_len = dm.seq_len
    assert seq_len == 128
    assert len(dm.train_set) == (len(dm.train_text) - seq_len - 1) // seq_len + 1
    x, y = dm.train_set[3]
    assert x.shape == y.shape == (seq_len,)
    assert torch.equal(x[1:], y[:-1])
    assert "".join(dm.vocab[i] for i in [*x.tolist(), y[-1].item()]) == dm.train_text[3 * seq_len : 4 * seq_len + 1]
    assert example.target_characters((x, y)) == seq_len
    # validation chunks come from the held-out text only
    val_x, _ = dm.val_set[0]
    assert 0 < len(dm.val_set) <= dm.val_chunks
    assert "".join(dm.vocab[i] for i in val_x.tolist()).replace("<unk>", "~") in dm.val_text

    from lightning_scaling import DataFraction

    wrapped = DataFraction(dm, fraction=0.5, size_fn=example.target_characters, size_unit="characters")
    wrapped.train_dataloader()
    assert wrapped.num_samples == round(0.5 * len(dm.train_set))
    assert wrapped.train_size == wrapped.num_samples * seq_len and wrapped.size_unit == "characters"


def test_model_size_data_are_contexts_of_each_training_character_measured_one_character_each(example, corpus):
    args = example.parse_args(["--model-size", "--text-file", str(corpus)])
    dm = example.build_datamodule(args)
    dm.setup("fit")
    k = example.settings_of(args)["context"]
    assert len(dm.train_set) == len(dm.train_text) - k
    x, y = dm.train_set[5]
    assert x.shape == (k,) and y.shape == ()
    assert "".join(dm.vocab[i] for i in [*x.tolist(), y.item()]) == dm.train_text[5 : 5 + k + 1]
    assert example.target_characters((x, y)) == 1
    # validation contexts come from the held-out text only, spread over it
    assert 0 < len(dm.val_set) <= len(dm.val_text) - k
    vx, vy = dm.val_set[len(dm.val_set) - 1]
    assert "".join(dm.vocab[i] for i in [*vx.tolist(), vy.item()]).replace("<unk>", "~") in dm.val_text
    model = example.CharMLP(vocab_size=len(dm.vocab), width=8, context=k)
    assert model(x[None]).shape == (1, len(dm.vocab))
    assert args.root == "runs/char_lm_model_size" and example.parse_args([]).root == "runs/char_lm"


def test_python_documentation_is_split_by_whole_topics(example):
    from pydoc_data.topics import topics

    dm = example.build_datamodule(example.parse_args([]))
    keys = sorted(topics)
    cut = next(i for i in range(len(keys)) if "".join(topics[k] for k in keys[i:]) == dm.val_text)
    assert dm.train_text == "".join(topics[k] for k in keys[:cut])
    assert 0.1 <= len(dm.val_text) / (len(dm.train_text) + len(dm.val_text)) < 0.2


def test_a_corpus_of_one_document_cannot_be_split(example):
    with pytest.raises(ValueError, match="cannot be split"):
        example.split_documents(["just one line without a newline"])


def test_hf_dataset_without_the_datasets_package_says_what_to_install(example, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(SystemExit, match="pip install datasets"):
        example.hf_documents("wikitext", "wikitext-2-raw-v1")


def test_model_trains_on_the_text_file_data_and_logs_loss_in_nats_and_bits(example, corpus):
    import pytorch_lightning as pl

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    dm = example.build_datamodule(example.parse_args(["--text-file", str(corpus)]))
    model = example.CharLSTM(vocab_size=len(dm.vocab), width=8)
    trainer = pl.Trainer(max_steps=3, val_check_interval=3, check_val_every_n_epoch=None, accelerator="cpu",
                         devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert trainer.global_step == 3
    # an untrained model is close to uniform over the vocabulary
    assert abs(float(metrics["val_loss"]) - math.log(len(dm.vocab))) < 1.0
    assert float(metrics["val_bpc"]) == pytest.approx(float(metrics["val_loss"]) / math.log(2), rel=1e-5)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_"))}
    env.update({"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    return env


@pytest.mark.slow
def test_smoke_study_measures_characters_and_fits_a_law(example, tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--root", str(tmp_path)], env=_env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "char_lm"
    result = json.loads((folder / "result.json").read_text())
    settings = example.SMOKE
    runs = result["runs"]
    assert len(runs) == len(settings["fractions"]) * len(settings["widths"]) * settings["seeds"]
    assert all(r["status"] == "ok" for r in runs) and result["n_ok"] == len(runs)

    # the x-axis is training characters: every chunk contributes its 128 target characters
    assert result["size_unit"] == "characters"
    chunks = (settings["max_train_chars"] - 128 - 1) // 128 + 1
    for r in runs:
        assert r["size_unit"] == "characters"
        assert r["num_samples"] == max(1, math.floor(r["fraction"] * chunks + 0.5))
        assert r["train_size"] == r["num_samples"] * 128
        assert r["steps"] == settings["steps"]
    sizes = {r["fraction"]: r["train_size"] for r in runs}
    ordered = [sizes[f] for f in sorted(sizes)]
    assert ordered == sorted(ordered) and len(set(ordered)) == len(ordered)
    # wider models have more parameters, as the model-size law needs
    params = {r["params"]["width"]: r["trainable_params"] for r in runs}
    assert params[settings["widths"][0]] < params[settings["widths"][1]]

    law = result["law"]
    assert law is not None and law["beta"] < 0
    lo, hi = law["intervals"]["beta"]
    assert lo <= law["beta"] <= hi
    assert law["sizes"] == sorted(set(ordered))
    assert (folder / "learning_curve.png").stat().st_size > 10_000

    # what the controller prints for the user
    assert f"results: {folder / 'result.json'}" in proc.stdout
    assert f"figure:  {folder / 'learning_curve.png'}" in proc.stdout
    assert f"exponent beta = {law['beta']:.3f}" in proc.stdout
    print(f"char_lm smoke study: {elapsed:.1f} s")


@pytest.mark.slow
def test_model_size_smoke_study_ranks_every_run_by_its_last_validation(example, tmp_path):
    from lightning_scaling import SweepResult

    proc = subprocess.run([sys.executable, str(SCRIPT), "--model-size", "--smoke", "--root", str(tmp_path)],
                          env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "char_lm_model_size"
    result = json.loads((folder / "result.json").read_text())
    settings = example.SIZE_SMOKE
    assert result["n_ok"] == len(result["runs"]) == len(settings["fractions"]) * len(settings["widths"])
    # the selection is in the result and in every run's record, and each record holds both values
    assert result["select"] == "last"
    records = [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]
    assert len(records) == len(result["runs"])
    assert all(r["select"] == "last" and math.isfinite(r["final_value"]) and math.isfinite(r["best_value"])
               and r["metrics_at_final"]["val_loss"] == r["final_value"] for r in records)
    # the winner at each size is the run with the lowest LAST validation loss there, at that value
    by_size: dict[float, list[dict]] = {}
    for r in records:
        by_size.setdefault(r["fraction"], []).append(r)
    for row in result["best"]:
        winner = min(by_size[row["amount"]], key=lambda r: r["final_value"])
        assert row["params"] == winner["params"] and row["errors"] == [winner["final_value"]]
    # the same folder ranked by the best value over training: nothing is retrained, the errors are best values
    by_best = SweepResult.load(folder, bootstrap=0, select="best")
    assert by_best.select == "best"
    for row in by_best.best:
        winner = min(by_size[row["amount"]], key=lambda r: r["best_value"])
        assert row["errors"] == [winner["best_value"]]
    assert "best width per size (last validation loss):" in proc.stdout
