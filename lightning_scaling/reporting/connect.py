"""Starting a W&B run that never stalls or stops a sweep: a bounded online start, else offline.

``wandb.init`` online can take minutes to fail: against a server that refuses connections or never
answers it retries for ``init_timeout`` (90 s by default) plus a grace period, and without an API
key it raises (or, in a terminal, prompts). :func:`open_run` first asks the server for any answer
within a few seconds; when there is none, when the key is missing, or when the online start fails
anyway (bounded by ``init_timeout``), it starts the run offline instead: everything is kept in the
run's local folder, and ``wandb sync`` uploads it later. It returns why it went offline, so the
caller can say so once.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["INIT_TIMEOUT_S", "REACH_TIMEOUT_S", "effective_mode", "open_run", "sync_hint", "unreachable"]

#: seconds the server has to answer any HTTP request before a run starts offline instead
REACH_TIMEOUT_S = 3.0
#: ``init_timeout`` of an online start (W&B's default is 90 s), unless the caller's settings set one
INIT_TIMEOUT_S = 20.0
_OFF = ("offline", "dryrun", "disabled")


def effective_mode(init_kwargs: Mapping[str, Any]) -> str:
    """The mode a ``wandb.init(**init_kwargs)`` would run in: its ``mode=``, else W&B's settings
    (``WANDB_MODE``, ``wandb offline``), else ``"online"``."""
    mode = init_kwargs.get("mode")
    settings = init_kwargs.get("settings")
    if mode is None and settings is not None:
        mode = settings.get("mode") if isinstance(settings, Mapping) else getattr(settings, "mode", None)
    if mode is None:
        try:
            import wandb

            mode = wandb.setup().settings.mode
        except Exception:  # W&B's own settings could not be read: its environment variable then
            mode = os.environ.get("WANDB_MODE")
    return str(mode or "online")


def base_url() -> str:
    """The W&B server ``wandb.init`` would talk to (``WANDB_BASE_URL``, the settings files, W&B's cloud)."""
    try:
        import wandb

        return str(wandb.setup().settings.base_url)
    except Exception:
        return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def unreachable(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why the W&B server at ``url`` cannot be reached (``None``: it answered, with any HTTP status).

    Example:
        >>> unreachable("http://127.0.0.1:1", timeout=1.0) is not None  # nothing listens on port 1
        True
    """
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # an HTTP answer, even 401 or 404: the server is there
    except (OSError, ValueError) as exc:  # refused, reset, no answer within timeout, a bad URL
        reason = getattr(exc, "reason", None) or exc
        return f"the W&B server {url} did not answer within {timeout:g} s ({type(reason).__name__}: {reason})"


def _with_init_timeout(init_kwargs: dict[str, Any], seconds: float) -> dict[str, Any]:
    settings = init_kwargs.get("settings")
    if settings is None:
        import wandb

        init_kwargs["settings"] = wandb.Settings(init_timeout=seconds)
    elif isinstance(settings, Mapping) and "init_timeout" not in settings:
        init_kwargs["settings"] = {**settings, "init_timeout": seconds}
    return init_kwargs  # a Settings object the caller built keeps its own timeout


def open_run(init_kwargs: Mapping[str, Any], *, init_timeout: float = INIT_TIMEOUT_S,
             reach_timeout: float = REACH_TIMEOUT_S) -> tuple[Any, str | None]:
    """``wandb.init(**init_kwargs)``, online only when the server answers: ``(run, why it went offline)``.

    Offline or disabled runs start at once. An online start first checks the server answers within
    ``reach_timeout`` seconds, then waits at most ``init_timeout`` for W&B; when either fails (or no
    API key is configured), the same run starts offline and the reason is returned.

    Raises:
        Exception: whatever ``wandb.init`` raises for an offline start (a bad argument, a full disk).
    """
    import wandb

    kwargs = dict(init_kwargs)
    if effective_mode(kwargs) in _OFF:
        return wandb.init(**kwargs), None
    url = base_url()
    why = unreachable(url, reach_timeout)
    if why is None:
        try:
            return wandb.init(**_with_init_timeout(dict(kwargs), init_timeout)), None
        except Exception as exc:  # no key, a refused key, a server that stopped answering: go offline
            why = f"wandb.init failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    kwargs["mode"] = "offline"
    return wandb.init(**kwargs), why


def sync_hint(run: Any) -> str:
    """The command that uploads the offline runs later: ``wandb sync <W&B folder>/offline-run-*`` (the
    folder of ``run``'s offline folder, where the study's runs write too)."""
    folder = getattr(run, "dir", None)  # <W&B folder>/offline-run-<time>-<id>/files
    root = os.path.dirname(os.path.dirname(str(folder).rstrip("/"))) if folder else "<W&B folder>"
    return f"wandb sync {root}/offline-run-*"
