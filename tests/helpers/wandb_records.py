"""Read what an offline W&B run recorded, from its ``run-<id>.wandb`` file.

wandb 0.31 has no public reader for offline runs. The file is a 7-byte W&B header (``:W&B``, a
uint16 magic, a version byte) followed by a LevelDB log (32 KiB blocks of records framed as
crc32 / length / type, FULL/FIRST/MIDDLE/LAST chunks), each record a serialised
``wandb_internal_pb2.Record``. Parsing it here lets the tests assert the values W&B would upload.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B" and magic == 0xBEE1 and version == 0, (ident, magic, version)
    out, buf, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's trailer: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad checksum at {pos}"
        pos += _HEADER + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            buf = chunk
        elif kind == _MIDDLE:
            buf += chunk
        elif kind == _LAST:
            out.append(buf + chunk)
    records = []
    for raw in out:
        rec = pb.Record()
        rec.ParseFromString(raw)
        records.append(rec)
    return records


def _key(item: Any) -> tuple[str, ...]:
    return tuple(item.nested_key) if item.nested_key else (item.key,)


def _set(target: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for k in key[:-1]:
        target = target.setdefault(k, {})
    target[key[-1]] = value


def _unset(target: dict[str, Any], key: tuple[str, ...]) -> None:
    for k in key[:-1]:
        target = target.get(k, {})
    target.pop(key[-1], None)


@dataclass
class OfflineRun:
    """One offline run: its settings, config, summary, history rows and artifacts, as W&B would sync them."""

    path: Path
    id: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[Any] = field(default_factory=list)
    exit_code: int | None = None
    removed: list[str] = field(default_factory=list)  # summary keys removed (top-level keys)

    @property
    def files(self) -> Path:
        return self.path.parent / "files"

    def table(self, value: dict[str, Any]) -> dict[str, Any]:
        """A logged Table's columns and rows, from the file its history entry points to."""
        assert value["_type"] == "table-file", value
        return json.loads((self.files / value["path"]).read_text())

    def last(self, key: str) -> Any:
        rows = [h[key] for h in self.history if key in h]
        assert rows, f"{key} was never logged; logged keys: {sorted({k for h in self.history for k in h})}"
        return rows[-1]


def read_run(path: Path) -> OfflineRun:
    run = OfflineRun(path=path)
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.group, run.job_type, run.name = r.run_id, r.run_group, r.job_type, r.display_name
            run.tags = list(r.tags)
            for item in r.config.update:
                _set(run.config, _key(item), json.loads(item.value_json))
        elif kind == "config":
            for item in rec.config.update:
                _set(run.config, _key(item), json.loads(item.value_json))
        elif kind == "summary":
            for item in rec.summary.update:
                _set(run.summary, _key(item), json.loads(item.value_json))
            for item in rec.summary.remove:  # del run.summary[key]: W&B's sync drops the key
                _unset(run.summary, _key(item))
                run.removed.append(".".join(_key(item)))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set(row, _key(item), json.loads(item.value_json))
            run.history.append(row)
        elif kind == "artifact":
            run.artifacts.append(rec.artifact)
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under ``root``."""
    return [read_run(p) for p in sorted(root.rglob("run-*.wandb"))]


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    """Poll ``condition()`` every 50 ms until it holds (W&B writes its run files asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the reporter")


def one_run(root: Path) -> OfflineRun:
    """The one offline run under ``root``, once its exit record is written."""
    runs: list[OfflineRun] = []

    def finished() -> bool:
        runs[:] = offline_runs(root)
        return len(runs) == 1 and runs[0].exit_code is not None

    wait_for(finished)
    return runs[0]


def merged_runs(root: Path) -> dict[str, OfflineRun]:
    """The runs under ``root`` as W&B would hold them after ``wandb sync``: the offline folders of one
    run id (a resumed run) applied in the order they were written."""
    out: dict[str, OfflineRun] = {}
    for run in sorted(offline_runs(root), key=lambda r: r.path.stat().st_mtime):
        if run.id not in out:
            out[run.id] = run
            continue
        into = out[run.id]
        into.config.update(run.config)
        into.summary.update(run.summary)
        for key in run.removed:
            into.summary.pop(key, None)
        into.history += run.history
        into.artifacts += run.artifacts
        into.exit_code = run.exit_code
    return out
