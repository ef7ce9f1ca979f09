"""A parity runner in a process of its own, started ahead of its request.

Why: `archspec port --from torch --to keras` needs torch only for its reference (torch64).
Run here, the reference's framework never enters the parent (1.3 s of import saved there;
torch after TensorFlow in one process can crash), and its import and run overlap the
parent's own work (importing TensorFlow, building and saving the target).

`start()` launches `python -m archspec.isolated` (a fresh interpreter: it re-runs nothing of
the parent's `__main__`, unlike multiprocessing's spawn) with one end of a socket pair; the
child takes the parent's `sys.path` and the pickled runner, imports its framework
(`prepare()`, when the runner has one) and waits; `submit(request)` hands it the request
as soon as the weights are known; `run` collects the result. Failures are `ParityError`s
naming the runner: an exception in the child (its type and message), a child that died
(its exit code or signal), or one that gave no answer within `timeout` seconds (stopped,
then). The child leaves the parent a core, since both work at once: its OpenMP threads
(torch's intra-op pool) are one fewer than the machine's cores (`OMP_NUM_THREADS`, unless
set already); on 2 cores, torch64 then takes 1.0 s instead of 2.6-3.0 s of contended
time, and the port 0.3 s less wall time and 2.3 s less CPU. The child has a session of its
own, so Ctrl-C in a terminal reaches the parent only, which stops it (`close()`, also on
leaving a `with` block); a child whose parent died finds its socket closed and exits.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

from archspec.parity import ParityError, Runner, RunRequest, RunResult

TIMEOUT = 1800.0  # seconds a run may take once awaited (a big model at a big input is slow)


class Isolated:
    """`runner`, run in a child process; a parity runner itself (`name`, `run`...)."""

    def __init__(self, runner: Runner, timeout: float = TIMEOUT) -> None:
        self.runner, self.timeout = runner, timeout
        self.name, self.extra, self.modes = runner.name, runner.extra, runner.modes
        self.float64: bool = getattr(runner, "float64", False)
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._submitted: RunRequest | None = None
        self._sender: threading.Thread | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        return self.runner.devices  # asks here: imports the framework in this process

    def available(self) -> str | None:
        return self.runner.available()

    def start(self) -> None:
        """Launch the child (once); it imports its framework and waits for the request."""
        if self._process is not None:
            return
        try:
            runner = pickle.dumps(self.runner)
        except Exception as exc:  # a runner holding a lambda, a local class...
            raise ParityError(
                f"{self.name}: cannot start its process ({type(exc).__name__}: {exc})"
            ) from None
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "archspec.isolated", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout is the parent's report
                pass_fds=[theirs.fileno()],
                start_new_session=True,
                env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) - 1)), **os.environ},
            )
            self._conn = Connection(ours.detach())
        self._conn.send(sys.path)
        self._conn.send_bytes(runner)

    def submit(self, request: RunRequest) -> None:
        """Hand the child its request, without waiting (a thread writes it to the socket
        while the child may still be importing its framework)."""
        self.start()
        self._submitted = request
        self._sender = threading.Thread(target=_send, args=(self._conn, request), daemon=True)
        self._sender.start()

    def run(self, request: RunRequest) -> RunResult:
        if self._submitted is not request:
            self.submit(request)
        assert self._conn is not None and self._process is not None
        try:
            if not self._conn.poll(self.timeout):
                raise ParityError(
                    f"{self.name} gave no result within {self.timeout:.0f} s in its own "
                    "process, which was stopped"
                )
            try:
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                raise ParityError(
                    f"{self.name} ended its own process before giving a result "
                    f"({_exit(self._process)})"
                ) from None
        finally:
            self.close()
        if status != "ok":
            raise ParityError(f"{self.name} failed in its own process: {payload}")
        return payload

    def close(self) -> None:
        """Stop the child if it still runs; the runner can start again after."""
        process, conn, sender = self._process, self._conn, self._sender
        self._process = self._conn = self._submitted = self._sender = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if sender is not None:  # its write fails once the child is gone
            sender.join()
        if conn is not None:
            conn.close()

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _send(conn: Connection, request: RunRequest) -> None:
    with suppress(OSError):  # the child died: `run` says how
        conn.send(request)


def _exit(process: subprocess.Popen[bytes]) -> str:
    try:
        code = process.wait(5)
    except subprocess.TimeoutExpired:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _serve(conn: Connection) -> None:
    """The child: take the parent's sys.path and the runner, prepare, take one request,
    send back ("ok", result) or ("error", why)."""
    try:
        sys.path[:] = conn.recv()
        runner: Any = pickle.loads(conn.recv_bytes())
        prepare = getattr(runner, "prepare", None)
        if prepare is not None:
            prepare()
        request = conn.recv()
        start = time.perf_counter()
        result = runner.run(request)
        result.seconds = time.perf_counter() - start
        answer: tuple[str, Any] = ("ok", result)
    except EOFError:  # the parent is gone
        return
    except BaseException as exc:
        text = str(exc).strip()
        answer = ("error", f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")
    with suppress(OSError):  # the parent is gone
        conn.send(answer)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
