"""The sweep folder's lock: one controller at a time trains a sweep's runs.

A second controller started on a folder another one is working in stops at once, naming the host
and process that hold it (``SweepError``), before it writes anything. Chosen over letting both
controllers share the runs: an adaptive study decides its next runs from every record so far, the
probe, retries and the result are each one controller's work, and a refusal is simple to reason
about; two controllers sharing one study would gain little over a larger ``slots=``.

The lock is the file ``<sweep_dir>/.controller.lock`` (JSON: host, pid, a random token, start
time). It is created with a hard link from a complete temporary file (atomic, and fails if the
lock exists, also over NFS), or with ``O_EXCL`` where the filesystem has no hard links; no
``fcntl`` lock, which shared filesystems do not all honour. While the controller runs, a thread
touches the file every ``lease / 4`` seconds. A lock is taken over, with a message, when its
holder is gone: the same host and its process no longer exists, or its lease expired (not touched
for ``lease`` seconds: a controller on another host that died). Taking over renames the stale file
away first and checks that it was the stale one, so two controllers that find the same stale lock
do not both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LOCK_FILE", "SweepLock", "SweepLockedError"]

LOCK_FILE = ".controller.lock"
_HELD: set[str] = set()  # tokens of the locks this process holds (a second controller in it is refused too)


class SweepLockedError(RuntimeError):
    """Another live controller holds the sweep folder (``SweepError`` subclasses it in the controller)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


class SweepLock:
    """Hold ``<root>/.controller.lock`` while a controller works in ``root`` (a context manager).

    Args:
        root: the sweep folder (created if missing).
        lease: seconds after its last refresh that a lock of a controller on another host counts as
            abandoned (the holder refreshes it every ``lease / 4`` seconds).
        log: where the take-over message and a lost-lock warning go (default: stderr).
        error: the exception class of a refusal (the controller's ``SweepError``).

    Raises:
        SweepLockedError: (or ``error``) on entry, when a live controller holds the folder.

    Example:
        >>> import tempfile
        >>> with SweepLock(tempfile.mkdtemp()) as lock:
        ...     lock.path.exists()
        True
    """

    def __init__(self, root: str | os.PathLike[str], *, lease: float = 120.0,
                 log: Callable[[str], None] | None = None,
                 error: type[Exception] = SweepLockedError) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self.lease = float(lease)
        self.log = log or (lambda msg: print(f"[lightning-scaling] {msg}", file=sys.stderr, flush=True))
        self.error = error
        self.token = secrets.token_hex(8)
        self.content = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                                   "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z")}).encode()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back -------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock, taking over a stale one; a live holder: :class:`SweepLockedError` naming it."""
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # each round either creates the lock or clears a stale one
            if self._create():
                _HELD.add(self.token)
                self._thread = threading.Thread(target=self._refresh, name="sweep-lock", daemon=True)
                self._thread.start()
                return
            try:
                raw, age = self.path.read_bytes(), time.time() - self.path.stat().st_mtime
            except FileNotFoundError:  # given back meanwhile: try again
                continue
            holder = _parse(raw)
            stale = self._stale(holder, age)
            if stale is None:
                raise self.error(self._refusal(holder, age))
            if self._remove_if(raw):
                self.log(f"took over the lock of the sweep folder {self.root}: {stale}")
        raise self.error(f"could not take the lock {self.path}: other controllers keep taking it; start one")

    def release(self) -> None:
        """Stop refreshing and remove the lock if it is still this controller's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        _HELD.discard(self.token)
        with contextlib.suppress(OSError):
            self._remove_if(self.content)

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- the file ------------------------------------------------------------------------------
    def _create(self) -> bool:
        """Create the lock with this controller's content, atomically; ``False`` if one exists."""
        tmp = self.root / f"{LOCK_FILE}.{self.token}.tmp"
        tmp.write_bytes(self.content)
        try:
            os.link(tmp, self.path)  # the lock appears complete, or not at all
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some FUSE and SMB mounts): O_EXCL, written right after
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(self.content)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_if(self, expected: bytes) -> bool:
        """Remove the lock if it holds ``expected``; put back a lock that changed meanwhile."""
        grave = self.root / f"{LOCK_FILE}.{secrets.token_hex(6)}.old"
        try:
            os.rename(self.path, grave)  # atomic: of two controllers doing this, one gets the file
        except FileNotFoundError:
            return False
        try:
            if grave.read_bytes() == expected:
                return True
            with contextlib.suppress(OSError):  # another controller's fresh lock: give it back
                os.link(grave, self.path)
            return False
        finally:
            grave.unlink(missing_ok=True)

    def _stale(self, holder: dict[str, Any] | None, age: float) -> str | None:
        """Why the lock found is abandoned, or ``None`` when its holder may be alive."""
        if holder is None:  # unreadable: being written (O_EXCL path) unless it is old
            return f"it was unreadable and untouched for {age:.0f} s" if age > self.lease else None
        if holder.get("token") in _HELD:
            return None
        pid, same_host = holder.get("pid"), holder.get("host") == socket.gethostname()
        # kill(0) or kill(-1) would ask about a group, not a process
        if same_host and type(pid) is int and pid > 0 and (pid == os.getpid() or not _pid_alive(pid)):
            return f"its controller (pid {pid} on this host) is gone"
        if age > self.lease:
            return (f"its controller (host {holder.get('host')}, pid {pid}) has not refreshed it for {age:.0f} s "
                    f"(lease {self.lease:.0f} s)")
        return None

    def _refusal(self, holder: dict[str, Any] | None, age: float) -> str:
        who = ("a controller that is starting" if holder is None else
               f"another controller: host {holder.get('host')}, pid {holder.get('pid')}, started "
               f"{holder.get('started_at')}")
        return (f"the sweep folder {self.root} is in use by {who} (lock refreshed {age:.0f} s ago). Wait for it to "
                f"finish, or pass another sweep_dir= or name=. If that controller is gone, its lock is taken over "
                f"once its lease expires ({self.lease:.0f} s after the last refresh), or delete {self.path}")

    def _refresh(self) -> None:
        """Touch the lock every lease/4 seconds while it is ours; say once if another controller took it."""
        while not self._stop.wait(self.lease / 4):
            try:
                if self.path.read_bytes() == self.content:
                    os.utime(self.path)
                    continue
            except OSError:
                pass
            self.log(f"WARNING: the lock {self.path} was taken over by another controller (this one did not "
                     "refresh it in time); stop one of them, or runs may train twice")
            return


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None
