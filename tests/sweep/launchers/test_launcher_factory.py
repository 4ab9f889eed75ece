"""make_launcher: launchers by name or object, missing extras named when the sweep is built, and a
sweep package that imports neither Ray nor submitit."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.cluster_sweeps import SWEEP, sweep_env

from lightning_scaling.sweep.launchers import make_launcher


def test_missing_extra_fails_when_the_callback_is_built(monkeypatch):
    from lightning_scaling import ScalingSweep

    monkeypatch.delenv("LIGHTNING_SCALING_RUN", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"lightning-scaling\[ray\]"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="ray")
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"lightning-scaling\[slurm\]"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="slurm")
    with pytest.raises(ValueError, match="unknown launcher 'kubernetes'"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="kubernetes")


def test_sweep_package_imports_neither_ray_nor_submitit():
    code = ("import sys, lightning_scaling.sweep as s; s.RayLauncher, s.SlurmLauncher; "
            "print(sorted(m for m in ('ray', 'submitit', 'torch', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=sweep_env({}), check=True)
    assert out.stdout.strip() == "[]"


def test_make_launcher_names_and_objects():
    from lightning_scaling.sweep import LocalLauncher

    assert isinstance(make_launcher(None, slots=2), LocalLauncher)
    assert make_launcher("local", slots=3).capacity == 3
    obj = LocalLauncher(slots=1)
    assert make_launcher(obj) is obj
    with pytest.raises(ValueError, match="unknown launcher"):
        make_launcher("k8s")
    with pytest.raises(TypeError, match="has no"):
        make_launcher(object())  # type: ignore[arg-type]

    class Remote(LocalLauncher):  # a cluster launcher connects when its capacity is first read
        @property
        def capacity(self) -> int:
            raise AssertionError("connected while the sweep was being built")

    remote = Remote(slots=1)
    assert make_launcher(remote) is remote
