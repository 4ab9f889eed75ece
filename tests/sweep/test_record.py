"""The run record (``sweep/record.py``): its one builder, its accessors, and its documented schema."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from helpers.fake_launchers import InstantSlot
from helpers.records import make_record
from typing_extensions import get_type_hints

from lightning_scaling.sweep import SweepPlan, SweepStore
from lightning_scaling.sweep.controller import SweepController
from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.record import (
    COMPLETED,
    DIVERGED,
    FAILED,
    OK,
    RECORDED,
    RUN_RECORD_KEYS,
    RunRecord,
    build_record,
    grid_key,
    record_amount,
)

DOC = Path(__file__).parents[2] / "docs" / "sweep-folder.md"
JSON_FORMS = {str: "string", int: "integer", float: "number", dict: "object", list: "list of strings"}


def _documented() -> dict[str, tuple[str, str]]:
    """``{key: (JSON form, content)}`` from the table under ``## Run record`` in docs/sweep-folder.md."""
    section = DOC.read_text(encoding="utf-8").split("\n## Run record\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = {}
    for row in rows:
        key, form, content = (cell.strip() for cell in row.strip("|").split(" | ", 2))
        out[key.strip("`")] = (form, content)
    return out


def _json_form(annotation: Any) -> str:
    args = get_args(annotation)
    if type(None) in args:  # X | None
        (base,) = [a for a in args if a is not type(None)]
        return f"{_json_form(base)} or null"
    return JSON_FORMS[get_origin(annotation) or annotation]


def test_the_documented_schema_is_the_run_record():
    documented = _documented()
    # every key documented, no stale one, in the order a record is written
    assert list(documented) == list(RUN_RECORD_KEYS)
    hints = get_type_hints(RunRecord)
    for key, (form, _) in documented.items():
        always = form.endswith(", always")
        assert always == (key in RunRecord.__required_keys__), key
        assert form.removesuffix(", always") == _json_form(hints[key]), key


def test_one_builder_writes_every_status_in_the_documented_order():
    spec = RunSpec("f0.5_h8_s1", 0.5, None, {"hidden": 8}, 1, 3)
    for status in (OK, DIVERGED, FAILED):
        rec = build_record(spec, status=status, attempt=1, launch="abc", monitor="val_err", best_value=0.25)
        assert rec["status"] == status and rec["best_value"] == 0.25
        assert list(rec) == [k for k in RUN_RECORD_KEYS if k in rec]
        assert set(RunRecord.__required_keys__) <= set(rec)
    with pytest.raises(ValueError, match="status must be one of"):
        build_record(spec, status="finished", attempt=1, launch="abc", monitor="val_err")
    with pytest.raises(ValueError, match=r"not keys of a run record: \['best'\]"):
        build_record(spec, status=OK, attempt=1, launch="abc", monitor="val_err", best=0.25)


def test_a_rung_record_names_its_run_and_a_failed_record_keeps_what_the_run_measured():
    rung = RunSpec("n800_s0_abc_r0", None, 800, {}, 0, 0, base_id="n800_s0_abc", rung=0, budget=1 / 3)
    rec = build_record(rung, status=OK, attempt=1, launch="x", monitor="val_err")
    assert (rec["base_id"], rec["rung"], rec["budget"]) == ("n800_s0_abc", 0, 1 / 3)
    grid = build_record(RunSpec("n800_s0_abc", None, 800, {}, 0, 0), status=OK, attempt=1, launch="x",
                        monitor="val_err")
    assert "rung" not in grid and "base_id" not in grid
    measured = make_record("n800_s0_abc", size=800, best_value=0.4, steps=12, status=FAILED, reason="boom")
    given_up = build_record(RunSpec("n800_s0_abc", None, 800, {}, 0, 0), status=FAILED, attempt=2, launch="y",
                            reason="exit code 1", base=measured, attempts=["attempt 1: boom", "attempt 2: exit code 1"],
                            monitor="val_err")
    assert given_up["steps"] == 12 and given_up["attempt"] == 2 and given_up["reason"] == "exit code 1"
    assert list(given_up)[-1] == "attempts"


def test_status_sets_and_accessors():
    assert COMPLETED == (OK, DIVERGED) and RECORDED == (OK, DIVERGED, FAILED)
    assert record_amount(make_record(fraction=0.25)) == 0.25
    assert record_amount(make_record(size=800)) == 800
    assert record_amount(RunSpec("r", None, 64, {}, 0, 0)) == 64
    assert grid_key({"b": 1, "a": [2]}) == grid_key({"a": [2], "b": 1}) == '{"a": [2], "b": 1}'
    assert grid_key(None) == grid_key({}) == "{}"


def test_the_controller_writes_a_given_up_run_through_the_builder(tmp_path):
    """A run whose process dies without a record on every attempt gets a failed record with every key a
    record always has, and the reason of each attempt."""
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)

    class Dies(InstantSlot):  # every run exits with code 1 and writes nothing
        def describe(self):
            return "a slot whose runs die"

        def poll(self):
            done, self.jobs = [(j, 1) for j in self.jobs], []
            return done

        def wait(self, timeout):
            pass

    ctrl = SweepController(plan, store, launcher=Dies(store), command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                           probe=False, max_retries=1, stream=io.StringIO())
    result = ctrl.run()
    records = store.records()
    assert len(records) == 4 and all(r["status"] == FAILED for r in records.values())
    for r in records.values():
        assert set(RunRecord.__required_keys__) <= set(r) and list(r) == [k for k in RUN_RECORD_KEYS if k in r]
        assert len(r["attempts"]) == 2 and r["attempt"] == 2 and re.match(r"attempt 1: exit code 1", r["attempts"][0])
    assert result.law is None and len(result.runs) == 4
