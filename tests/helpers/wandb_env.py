"""An offline W&B home for one test: every W&B folder under ``root``, offline mode, the singleton reset."""

from __future__ import annotations

from pathlib import Path

import pytest


def offline_wandb_home(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point W&B's folders at ``root`` and run it offline; call ``wandb.teardown()`` after the test."""
    import wandb

    for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # wandb reads its environment once per process, into a singleton: reset it so these folders apply
    wandb.teardown()
    return root
