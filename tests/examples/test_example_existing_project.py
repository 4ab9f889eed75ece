"""The "existing project" example: a Lightning project before and after it became a scaling study.

``examples/existing_project`` holds two pairs of scripts (plain Lightning and LightningCLI) over
scikit-learn's digits. The fast test guards the pitch: the "after" scripts only add lines to the
"before" ones. The slow tests run every script as a user would, in a subprocess with tiny settings.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_scaling.sweep.plan import geometric

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "existing_project"
TIMEOUT = 300
FRACTIONS = [0.125, 0.25, 0.5, 1.0]
N_TRAIN = 1297  # digits: 1,797 images, 500 held out for validation


def _params(hidden: int) -> int:
    return 64 * hidden + hidden + hidden * 10 + 10  # DigitsMLP: 64 -> hidden -> 10


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_"))}
    env.update({"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    return env


def _start(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(EXAMPLE / script), *args], env=_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} timed out after {TIMEOUT} s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _run(tmp_path: Path, script: str, *args: str) -> tuple[str, str]:
    return _finish(_start(tmp_path, script, *args))


def _check_sweep(folder: Path, key: str, widths: list[int]) -> dict:
    result = json.loads((folder / "result.json").read_text())
    runs = result["runs"]
    assert len(runs) == len(FRACTIONS) * len(widths)
    assert all(r["status"] == "ok" for r in runs), [r.get("reason") for r in runs]
    # the grid value reached the model: each width trained a model of its own size
    assert {r["params"][key]: r["trainable_params"] for r in runs} == {w: _params(w) for w in widths}
    # the planned data sizes: the callback subsampled the training loader (nested subsets) at each fraction
    for w in widths:
        sizes = sorted((r["fraction"], r["num_samples"]) for r in runs if r["params"][key] == w)
        assert sizes == [(f, int(f * N_TRAIN + 0.5)) for f in FRACTIONS]
    assert len(result["best"]) == len(FRACTIONS)
    return result


# ------------------------------------------------------------------------------------ the pitch
def _changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """The non-blank lines ``after`` adds to ``before``, and the lines of ``before`` it removes or edits."""
    a = (EXAMPLE / before).read_text().splitlines()
    b = (EXAMPLE / after).read_text().splitlines()
    added, removed = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            removed += a[i1:i2]
        if tag in ("replace", "insert"):
            added += [line for line in b[j1:j2] if line.strip()]
    return added, removed


def test_plain_after_only_adds_lines_to_plain_before():
    added, removed = _changes("plain_before.py", "plain_after.py")
    # one line is edited, only by appending an argument: the Trainer gets the callback
    assert len(removed) == 1 and removed[0].strip().startswith("trainer = pl.Trainer("), removed
    assert removed[0].removesuffix(")") + ", callbacks=[sweep])" in added
    assert len(added) <= 12, added
    text = "\n".join(added)
    assert "ScalingSweep(" in text and 'current_run().param("hidden"' in text


def test_cli_after_is_cli_before_plus_a_config_file():
    added, removed = _changes("cli_before.py", "cli_after.py")
    assert not added and not removed, (added, removed)
    sweep = yaml.safe_load((EXAMPLE / "sweep.yaml").read_text())["trainer"]["callbacks"][0]
    assert sweep["class_path"] == "lightning_scaling.ScalingSweep"
    # the same study as plain_after.py's defaults
    assert sweep["init_args"]["fractions"] == geometric(1 / 32, 1.0, num=6)
    assert sweep["init_args"]["grid"] == {"model.hidden": [16, 64, 256]} and sweep["init_args"]["seeds"] == 2
    plain = (EXAMPLE / "plain_after.py").read_text()
    assert "default=ScalingSweep.geometric(1 / 32, 1.0, num=6)" in plain and "default=[16, 64, 256]" in plain


# ------------------------------------------------------------------------------ the scripts run
@pytest.mark.slow
def test_before_scripts_train(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "cli").mkdir()
    # both at once: most of each is the interpreter importing torch, Lightning and scikit-learn
    plain = _start(tmp_path, "plain_before.py", "--max-epochs", "1", "--root", str(tmp_path / "plain"))
    cli = _start(tmp_path, "cli_before.py", "fit", "--trainer.max_epochs=1",
                 f"--trainer.default_root_dir={tmp_path / 'cli'}")
    for proc in (plain, cli):
        _, err = _finish(proc)
        assert "`Trainer.fit` stopped: `max_epochs=1` reached." in err
    for root in ("plain", "cli"):
        # one ordinary training run (CSV or TensorBoard logs, whichever is installed), no sweep
        ckpts = [p.name for p in (tmp_path / root).glob("lightning_logs/*/checkpoints/*.ckpt")]
        assert ckpts == ["epoch=0-step=41.ckpt"]  # 1,297 images in batches of 32
        assert not (tmp_path / root / "scaling_sweeps").exists()


@pytest.mark.slow
def test_plain_after_runs_a_scaling_sweep(tmp_path):
    out, err = _run(tmp_path, "plain_after.py", "--max-epochs", "2", "--root", str(tmp_path),
                    "--fractions", *map(str, FRACTIONS), "--widths", "8", "32", "--seeds", "1")
    assert "plan: 8 runs = 4 data fractions [0.125, 0.25, 0.5, 1] x 2 grid points" in err
    result = _check_sweep(tmp_path / "scaling_sweeps" / "digits", "hidden", [8, 32])
    assert all(r["epochs"] == 2 for r in result["runs"])
    # every run keeps its own Lightning logs and checkpoint, in a folder named after it, also when two runs
    # start at once (Lightning's version_N numbering lists the folder, then creates it: both could take one N)
    logs = tmp_path / "lightning_logs"
    for r in result["runs"]:
        assert [p.name for p in (logs / r["run_id"] / "checkpoints").glob("*.ckpt")] == [
            f"epoch=1-step={2 * -(-r['num_samples'] // 32)}.ckpt"], r["run_id"]
    # the controller printed the fitted law (the runs skip the print)
    assert out.startswith("eps(m) = ") and result["law"] is not None


@pytest.mark.slow
def test_cli_after_runs_a_scaling_sweep_from_its_config(tmp_path):
    # sweep.yaml with tiny settings: the same config path, fewer and smaller runs
    config = yaml.safe_load((EXAMPLE / "sweep.yaml").read_text())
    sweep = config["trainer"]["callbacks"][0]["init_args"]
    sweep.update(fractions=FRACTIONS, grid={"model.hidden": [8, 32]}, seeds=1)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    _run(tmp_path, "cli_after.py", "fit", "--config", str(tmp_path / "tiny.yaml"), "--trainer.max_epochs=2",
         f"--trainer.default_root_dir={tmp_path}")
    folder = tmp_path / "scaling_sweeps" / sweep["name"]
    result = _check_sweep(folder, "model.hidden", [8, 32])
    # every run is the user's command line with the run's width and seed appended
    for r in result["runs"]:
        log = (folder / "logs" / f"{r['run_id']}.log").read_text()
        assert f"--model.hidden={r['params']['model.hidden']} --seed_everything={r['seed']}" in log
