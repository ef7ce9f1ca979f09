"""A parity runner in a process of its own, started ahead of its request.

Why: `archspec port --from torch --to keras` needs torch only for its reference (torch64).
Run here, the reference's framework never enters the parent (importing torch after
TensorFlow in one process can crash), and its import and run overlap the parent's own
work (importing TensorFlow, building and saving the target): on 2 cores the port's wall
time loses torch's import and the reference run.

`start()` spawns the child (spawn context: a fresh interpreter, nothing inherited from the
parent's imports), which imports its framework (`prepare()`, when the runner has one) and
waits; `submit(request)` hands it the request as soon as the weights are known; `run`
collects the result. Failures are `ParityError`s naming the runner: an exception in the
child (its type and message), a child that died (its exit code), or one that gave no
answer within `timeout` seconds (stopped, then). The child ignores Ctrl-C, which the
parent handles: `close()` (also on leaving a `with` block, and at interpreter exit, the
process being a daemon) stops it; a child whose parent died finds its pipe closed and exits.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection, wait
from typing import Any

from archspec.parity import ParityError, Runner, RunRequest, RunResult

TIMEOUT = 1800.0  # seconds a run may take once awaited (a big model at a big input is slow)


class Isolated:
    """`runner`, run in a child process; a parity runner itself (`name`, `run`...)."""

    def __init__(self, runner: Runner, timeout: float = TIMEOUT) -> None:
        self.runner, self.timeout = runner, timeout
        self.name, self.extra, self.modes = runner.name, runner.extra, runner.modes
        self.float64: bool = getattr(runner, "float64", False)
        self._process: Any = None
        self._conn: Connection | None = None
        self._submitted: RunRequest | None = None
        self._sender: threading.Thread | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        return self.runner.devices  # asks here: imports the framework in this process

    def available(self) -> str | None:
        return self.runner.available()

    def start(self) -> None:
        """Spawn the child (once); it imports its framework and waits for the request."""
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve, args=(child, self.runner), name=f"archspec {self.name}", daemon=True
        )
        try:
            with _sigint_ignored():  # inherited: Ctrl-C never reaches the child
                process.start()
        except Exception as exc:  # an unpicklable runner, no process left to spawn
            raise ParityError(
                f"{self.name}: cannot start its process ({type(exc).__name__}: {exc})"
            ) from None
        finally:
            child.close()
        self._process, self._conn = process, parent

    def submit(self, request: RunRequest) -> None:
        """Hand the child its request, without waiting (a thread writes it to the pipe
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
            ready = wait([self._conn, self._process.sentinel], self.timeout)
            if not ready:
                raise ParityError(
                    f"{self.name} gave no result within {self.timeout:.0f} s in its own "
                    "process, which was stopped"
                )
            try:
                status, payload = self._conn.recv()
            except (EOFError, OSError):
                self._process.join(5)
                raise ParityError(
                    f"{self.name} ended its own process before giving a result "
                    f"({_exit(self._process.exitcode)})"
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
        if process is not None:
            if process.is_alive():
                process.terminate()
                process.join(5)
                if process.is_alive():
                    process.kill()
            process.join()
        if sender is not None:  # its write fails once the child is gone
            sender.join()
        if conn is not None:
            conn.close()

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(conn: Connection, runner: Runner) -> None:
    """The child: prepare, take one request, send back ("ok", result) or ("error", why)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
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


def _send(conn: Connection, request: RunRequest) -> None:
    with suppress(OSError):  # the child died: `run` says how
        conn.send(request)


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile (in the main thread, the only one that may change it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
