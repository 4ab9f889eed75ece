"""A fork server: import torch and Lightning once, then start every run as a fork of that process.

A fresh Python process spends seconds importing torch and Lightning before a run trains a single
step (about 5 s on a laptop CPU). For a sweep of many short runs that is most of the cost, and on a
CPU machine it competes with training for the cores. The server imports the heavy modules once,
never initialises CUDA, and forks one child per run; the child gets its own session, environment
(``CUDA_VISIBLE_DEVICES`` is set before CUDA is ever touched), working directory and log file, and
runs the user's script with :mod:`runpy` as ``__main__``. Each run is still its own process: a
crash or OOM kills that run only. Linux only (``fork``); elsewhere runs are plain subprocesses.

Protocol (one JSON object per line): the controller writes ``{"id", "argv", "env", "cwd", "log"}``
to the server's stdin; the server answers ``{"event": "ready"}`` once its imports are done,
``{"event": "started", "id", "pid"}`` per run and ``{"event": "exited", "pid", "rc"}`` as soon as a
run ends (SIGCHLD wakes it), on its stdout. Closing stdin stops the server. The controller does not
wait for ``ready``: it starts the server and goes on with its own work while the server imports.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from lightning_scaling.sweep.launchers.base import die_with_parent

__all__ = ["ForkServer", "ForkedProcess"]


class ForkedProcess:
    """The part of :class:`subprocess.Popen` the launcher uses, for a run forked by the server."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.pump()
            self.returncode = self.server.exit_codes.pop(self.pid, None)
            if self.returncode is None and self.server.proc.poll() is not None:
                # the server is gone (its events all read): its children died with it, so this run
                # failed rather than running forever
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode


# -c rather than -m: the package imports this module, and runpy warns when it re-runs an imported one
_SERVE = "import sys; from lightning_scaling.sweep.launchers.forkserver import serve; serve(sys.argv[1:])"


class ForkServer:
    """Controller side: starts the server process and asks it for runs."""

    def __init__(self, preload: Sequence[str], env: Mapping[str, str]) -> None:
        self.exit_codes: dict[int, int] = {}
        self._started: dict[int, int] = {}
        self._buffer = b""
        self._next = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=dict(env),
            start_new_session=True, preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        assert self.proc.stdout is not None
        # no wait for "ready" here: the server imports while the controller goes on (W&B start, probe
        # setup); the first spawn's job waits in the pipe until the server reads it
        self._fd = self.proc.stdout.fileno()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: str, log: Path) -> ForkedProcess:
        self._next += 1
        job_id = self._next
        msg = {"id": job_id, "argv": list(argv), "env": dict(env), "cwd": cwd, "log": str(log)}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        while job_id not in self._started:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fork server exited (code {self.proc.returncode})")
            self.pump(timeout=0.5)
        return ForkedProcess(self, self._started.pop(job_id))

    def pump(self, timeout: float = 0.0) -> None:
        """Read whatever the server has said, without blocking longer than ``timeout``."""
        while True:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # not the protocol's (the server keeps imports' prints off this pipe)
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "started":
                    self._started[event["id"]] = event["pid"]
                elif event.get("event") == "exited":
                    self.exit_codes[event["pid"]] = event["rc"]
            timeout = 0.0

    def close(self) -> None:
        if self._next == 0:
            # never asked for a run (a resumed study found nothing to do): no need to let it finish importing
            self.proc.kill()
            self.proc.wait()
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------------------------- server side
def _child(job: dict[str, Any], server_fds: Sequence[int]) -> None:  # pragma: no cover - runs in the forked child
    code = 1
    try:
        os.setsid()
        die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in server_fds:  # the server's protocol and wake-up pipes are not the run's
            with contextlib.suppress(OSError):
                os.close(fd)
        log = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.environ.clear()
        os.environ.update(job["env"])
        os.chdir(job["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            sys.stdout.reconfigure(write_through=True)  # type: ignore[union-attr]
            sys.stderr.reconfigure(write_through=True)  # type: ignore[union-attr]
        if "torch" in sys.modules:
            # torch read OMP_NUM_THREADS when the server imported it; apply this slot's share
            sys.modules["torch"].set_num_threads(int(job["env"].get("OMP_NUM_THREADS", "1")))
        import runpy

        argv = job["argv"][1:]
        try:
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path[0] = str(Path(argv[0]).resolve().parent)
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _preload(modules: Sequence[str]) -> None:  # pragma: no cover - runs in the server process
    """Import ``modules`` once, for every run to share copy-on-write."""
    import gc

    # importing torch and Lightning allocates millions of objects; collecting while they are being
    # created only slows the import (~20%): collect once at the end
    gc.disable()
    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    # children share the imported modules' pages copy-on-write; collections that walk those objects
    # would touch (and copy) them in every run, so move them out of the collector's reach
    gc.collect()
    gc.freeze()
    gc.enable()


def _reap(children: set[int], send: Callable[[dict[str, Any]], None]) -> None:  # pragma: no cover - server
    """Report every run that has exited (without blocking) and forget it."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        send({"event": "exited", "pid": pid, "rc": os.waitstatus_to_exitcode(status)})


def serve(preload: Sequence[str]) -> None:  # pragma: no cover - runs in the server process
    """The server process's loop: import ``preload``, then fork a run per request on stdin until it closes."""
    # the protocol gets its own descriptor; fd 1 goes to stderr, so a module that prints while it is
    # imported cannot corrupt the protocol
    out: IO[bytes] = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _preload(preload)
    # a run's exit interrupts the wait at once (the controller starts the next run without a poll delay)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)

    def send(event: dict[str, Any]) -> None:
        out.write((json.dumps(event) + "\n").encode())
        out.flush()

    send({"event": "ready"})
    fd = sys.stdin.fileno()
    buffer = b""
    open_input = True
    children: set[int] = set()
    while open_input or children:
        ready, _, _ = select.select([fd, wake_r] if open_input else [wake_r], [], [], 1.0)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass
        if fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_input = False
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                job = json.loads(line)
                out.flush()
                pid = os.fork()
                if pid == 0:
                    _child(job, (out.fileno(), wake_r, wake_w))
                children.add(pid)
                send({"event": "started", "id": job["id"], "pid": pid})
        _reap(children, send)
    out.flush()
    # nothing left to clean up: skip the interpreter's teardown of torch and Lightning (~1 s)
    os._exit(0)

