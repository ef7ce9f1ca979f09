"""`archspec.isolated.Isolated`: a parity runner in a spawned process. Its result equals the
runner's in this process; an exception, a death or a hang in the child is a ParityError
naming the runner, and no child outlives its parent (Ctrl-C included). `archspec port
--from torch --to keras` runs torch64 this way and never imports torch itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from archspec_torch.parity import runner64

from archspec.isolated import Isolated
from archspec.lower import lower
from archspec.parity import (
    ParityError,
    Runner,
    RunRequest,
    RunResult,
    conforms,
    parity_request,
)
from archspec.registry import load
from archspec.weights import WeightSet


def request(name: str = "rcnn") -> RunRequest:
    spec = load(name)
    return parity_request(spec, lower(spec), batch=2, seed=3)


class Failing:
    """Runners for the child (module-level classes: the child unpickles them by name)."""

    name, extra, modes, devices = "failing", "torch", ("inference",), ("cpu",)

    def __init__(self, how: str) -> None:
        self.how = how

    def available(self) -> str | None:
        return None

    def run(self, request: RunRequest) -> RunResult:
        if self.how == "raise":
            raise ValueError("planted failure\nsecond line")
        if self.how == "die":
            os._exit(3)
        if self.how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(600)  # "hang"
        raise AssertionError("not reached")


class Threads(Failing):
    """Reports the child's OMP_NUM_THREADS and torch's intra-op thread count."""

    def run(self, request: RunRequest) -> RunResult:
        import torch

        omp = int(os.environ["OMP_NUM_THREADS"])
        return RunResult(outputs={"threads": np.array([omp, torch.get_num_threads()])})


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_child_gives_the_result_this_process_gives() -> None:
    """torch64 on rcnn: outputs and every probe bitwise equal to the in-process run."""
    req = request()
    here = runner64.run(req)
    with Isolated(runner64) as isolated:
        isolated.start()
        isolated.submit(req)
        there = isolated.run(req)
    assert there.seconds is not None and there.seconds > 0
    assert list(there.outputs) == list(here.outputs)
    assert list(there.probes) == list(here.probes) and here.probes
    for mine, theirs in ((here.outputs, there.outputs), (here.probes, there.probes)):
        for key, value in mine.items():
            assert theirs[key].dtype == value.dtype == np.float64
            assert np.array_equal(theirs[key], value), key


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("raise", "failing failed in its own process: ValueError: planted failure"),
        ("die", "failing ended its own process before giving a result (exit code 3)"),
        ("kill", "failing ended its own process before giving a result (killed by SIGKILL)"),
    ],
)
def test_a_failing_child_is_a_clear_parity_error(how: str, message: str) -> None:
    isolated = Isolated(Failing(how))
    isolated.start()
    pid = isolated._process.pid
    with pytest.raises(ParityError) as caught:
        isolated.run(request())
    assert str(caught.value) == message
    assert not alive(pid)


@pytest.mark.parametrize("preset", [None, "2"])
def test_the_child_leaves_the_parent_a_core(
    monkeypatch: pytest.MonkeyPatch, preset: str | None
) -> None:
    """OpenMP threads (torch's pool) one fewer than the cores, unless the user chose."""
    if preset is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", preset)
    want = max(1, (os.cpu_count() or 1) - 1) if preset is None else int(preset)
    with Isolated(Threads("")) as isolated:
        got = isolated.run(request()).outputs["threads"]
    assert got.tolist() == [want, want]


def test_a_hanging_child_times_out_and_is_stopped() -> None:
    isolated = Isolated(Failing("hang"), timeout=2)
    isolated.start()
    pid = isolated._process.pid
    start = time.perf_counter()
    with pytest.raises(ParityError, match="failing gave no result within 2 s in its own process"):
        isolated.run(request())
    assert time.perf_counter() - start < 30
    assert not alive(pid)


def test_closing_before_a_run_stops_the_child() -> None:
    """What the port does when it stops early (a misfit, a refused overwrite)."""
    isolated = Isolated(runner64)
    isolated.start()
    pid = isolated._process.pid
    isolated.submit(request("resnet18"))  # a big request, maybe still being written
    isolated.close()
    assert not alive(pid)


def test_a_script_without_a_main_guard_can_port(tmp_path: Path) -> None:
    """The child is `python -m archspec.isolated`: it never re-runs the parent's script
    (multiprocessing's spawn would, and fail in a script without `if __name__ ...`)."""
    script = tmp_path / "port_it.py"
    script.write_text(PORT_AND_REPORT)
    argv = ["port", str(rcnn_checkpoint(tmp_path)), "--spec", "rcnn", "--from", "torch",
            "--to", "onnx", "-o", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run([sys.executable, str(script), *argv],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert "exit 0 torch imported: False" in done.stderr, done.stdout + done.stderr
    assert "result: PASS" in done.stdout


def test_an_unpicklable_runner_is_a_clear_parity_error() -> None:
    class Local(Failing):  # not importable by name in the child
        pass

    with pytest.raises(ParityError, match="failing: cannot start its process"):
        Isolated(Local("raise")).start()


def test_checking_a_runner_evaluates_none_of_its_properties() -> None:
    """`get_runner` checks the Runner protocol; on Python 3.11 `isinstance` would call
    `devices`, which imports the framework (torch, for torch64)."""

    class Lazy(Failing):
        @property
        def devices(self) -> tuple[str, ...]:
            raise AssertionError("evaluated")

    assert conforms(Lazy("raise"), Runner)
    assert not conforms(object(), Runner)
    assert conforms(runner64, Runner)


def rcnn_checkpoint(tmp_path: Path) -> Path:
    import torch

    graph = lower(load("rcnn"))
    state = {k: torch.from_numpy(np.array(v)) for k, v in WeightSet.random(graph, 3).items()}
    torch.save(state, tmp_path / "rcnn.pt")
    return tmp_path / "rcnn.pt"


PORT_AND_REPORT = """
import sys
from archspec.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    print("exit", exc.code, "torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def test_port_from_torch_to_keras_never_imports_torch_in_its_process(tmp_path: Path) -> None:
    """A fresh process, as a user runs it: the port passes, the progress lines are as
    before, and torch was never imported in it (torch64 ran in a child)."""
    argv = ["port", str(rcnn_checkpoint(tmp_path)), "--spec", "rcnn", "--from", "torch",
            "--to", "keras", "-o", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", PORT_AND_REPORT, *argv],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert "exit 0 torch imported: False" in done.stderr, done.stdout + done.stderr
    assert "result: PASS" in done.stdout
    assert "running torch64 (inference, float64, cpu) ...\n  torch64: " in done.stderr
    assert "Traceback" not in done.stderr


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


@pytest.mark.parametrize("delay", [0.5, 1.5, 2.5])
def test_ctrl_c_during_a_port_leaves_no_process_behind(tmp_path: Path, delay: float) -> None:
    """SIGINT to the whole process group (what Ctrl-C in a terminal does) at several points
    (the child importing or running torch, the port importing TensorFlow and jax, whose
    extension modules crash or fail when interrupted in their initialization, and whose gc
    callback drops a KeyboardInterrupt): the port stops with "Aborted!", without a
    traceback, and its child (torch64's process) is gone."""
    exe = str(Path(sys.executable).with_name("archspec"))
    argv = [exe, "port", str(rcnn_checkpoint(tmp_path)), "--spec", "rcnn", "--from", "torch",
            "--to", "keras", "-o", str(tmp_path / "out")]  # fmt: skip
    port = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not children(port.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    kids = children(port.pid)
    assert kids, "the port started no child process"
    time.sleep(delay)
    os.killpg(port.pid, signal.SIGINT)
    _, err = port.communicate(timeout=60)
    assert port.returncode == 1, err
    assert "Traceback" not in err and err.rstrip().endswith("Aborted!"), err
    deadline = time.monotonic() + 10
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(k) for k in kids)


def test_a_child_whose_parent_is_killed_exits(tmp_path: Path) -> None:
    """SIGKILL to the port (no cleanup can run): its child finds the pipe closed and ends."""
    exe = str(Path(sys.executable).with_name("archspec"))
    argv = [exe, "port", str(rcnn_checkpoint(tmp_path)), "--spec", "rcnn", "--from", "torch",
            "--to", "keras", "-o", str(tmp_path / "out")]  # fmt: skip
    port = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not children(port.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    kids = children(port.pid)
    assert kids
    time.sleep(0.5)
    port.kill()
    port.wait()
    deadline = time.monotonic() + 60
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(k) for k in kids)
