"""A seeded mutation fuzzer over the zoo's YAML (used by tests/test_fuzz.py; also a script).

Each case copies one zoo spec (or one of tests/fuzz_specs/) and the libraries
(`specs/lib/*.yaml`) into a fresh folder, applies one to three mutations to the spec or to
the library it extends (a deleted key, a value of another type, random text, a huge or
non-finite number, deep nesting, a hostile name or file name, a random expression, a huge
repeat, a damaged stage table or numbering, or broken YAML syntax), and runs `archspec
validate` in process (click's CliRunner). The contract checked:

- the command ends with exit 0 or 2, never another exception, never a traceback, within
  CASE_SECONDS and without growing the process's peak memory by more than CASE_MEMORY_MB;
- a spec that validates also goes through `summary` and `graph` (exit 0), and every
  installed backend generates it (or refuses it with a located error) and its check in
  BACKEND_CHECKS passes: for torch, the source compiles, imports, instantiates and runs a
  forward pass whose output shapes are the IR's; for ONNX, the model passes the checker
  and runs in onnxruntime; for Keras, both styles generate and compile in process, and
  after the cases, a seeded sample of them (1 per `run`, i.e. per test chunk of 50;
  `ARCHSPEC_FUZZ_KERAS_SAMPLE=all` for every one) is built, loaded with a seeded WeightSet
  and run in both styles in ONE subprocess per `run` (TensorFlow's import would break the
  per-case memory bound), with output shapes, weights and values checked
  (`run_keras_batch`). A new backend adds its check there.

Run more cases: `ARCHSPEC_FUZZ_CASES=20000 pytest tests/test_fuzz.py`, or
`python tests/fuzzing.py --cases 20000 --seed 7` (prints counts per outcome).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from archspec import backend as plugins
from archspec.analysis import totals
from archspec.backend import Backend, BackendError
from archspec.cli import main
from archspec.errors import SpecError
from archspec.ir import Graph
from archspec.lower import lower
from archspec.registry import ResolvedSpec, load, specs_root, zoo_names

CASE_SECONDS = 30  # generous: CI machines are slow and shared; real cases take < 3 s
CASE_MEMORY_MB = 1024
SMALL_INPUT = (33, 33)  # forward passes run at a small odd size when the spec allows it
# Above this, the torch check builds and runs the model on the meta device: a mutant may
# be huge (a stage repeated 1,000 times), and initializing tens of millions of parameters
# (truncated normal especially) takes seconds on a CPU without telling anything new.
HUGE_PARAMS = 12_000_000


def fullwidth(text: str) -> str:
    """`torch` in fullwidth letters, which Python's NFKC normalization reads as `torch`."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


HOSTILE_NAMES = [
    "class",
    "None",
    "True",
    "_",
    "__class__",
    "__dict__",
    "__init__",
    "_modules",
    "_parameters",
    "forward",
    "training",
    "state_dict",
    "self",
    "x",
    "input",
    "prev",
    "in_channels",
    "index",
    "torch",
    "nn",
    "F",
    "math",
    "Any",
    "OrderedDict",
    "Sequence",
    "PaddedConv2d",
    "same_sides",
    "pair",
    "super",
    "sum",
    "int",
    fullwidth("torch"),
    fullwidth("nn"),
    fullwidth("super"),
    "conv\n",
    "a b",
    "1abc",
    "",
    'x"y',
    "x'y",
    "\x1b[2J\x07",
    "Net",
    "Bottleneck",
    "über",
    "a" * 300,
]
HOSTILE_STEMS = [
    "class",
    "_",
    "Net",
    "Bottleneck",
    fullwidth("torch"),
    "nn",
    "super",
    "x y",
    'q"uote',
]
NUMBERS: list[Any] = [
    0,
    -1,
    1,
    3,
    2**31,
    2**63,
    10**13,
    10**40,
    0.5,
    -0.0,
    1e308,
    -1e-308,
    math.nan,
    math.inf,
    -math.inf,
]
TEXT_ALPHABET = "abcXYZ019_ -$.{}[]()*+/%<>=!&|,:#'\"\\\n\t\x00\x1b\x07\u202e\uff54é"
EXPR_PIECES = [
    "in_channels",
    "index",
    "width",
    "planes",
    "growth_rate",
    "layers",
    "l",
    "1",
    "0",
    "-1",
    "2.5",
    "1e400",
    "99999999999999999999",
    "(-1)",
    "**",
    "*",
    "//",
    "/",
    "%",
    "+",
    "-",
    "==",
    "<",
    "and",
    "not",
    "if",
    "else",
    "(",
    ")",
    "[",
    "]",
    ",",
    "floor(",
    "max(",
    "len(",
    "sum(",
    "true",
    "'s'",
]
SPECIAL_EXPRS = [
    "${" + "(" * 300 + "1" + ")" * 300 + "}",
    "${" + "[" * 200 + "1" + "]" * 200 + "}",
    "${" + "-" * 400 + "1}",
    "${" + " if 1 else ".join(["1"] * 60) + "}",
    "${(-1) ** 0.5}",
    "${(-1) ** 0.5 > 1}",
    "${2 ** 64}",
    "${[1, 2, 3]}",
    "${[1] + [1]}",
    "${in_channels * 1000000}",
    "${1 / 0}",
    "${floor(1e300)}",
]


# ---------------------------------------------------------------------------- mutations


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXT_ALPHABET) for _ in range(rng.randint(0, 24)))


def random_expression(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(SPECIAL_EXPRS)
    return "${" + " ".join(rng.choice(EXPR_PIECES) for _ in range(rng.randint(1, 9))) + "}"


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["int", "float", "str", "bool", "none", "list", "dict", "expr"])
    if kind == "int":
        return rng.choice([v for v in NUMBERS if isinstance(v, int)])
    if kind == "float":
        return rng.choice([v for v in NUMBERS if isinstance(v, float)])
    if kind == "str":
        return random_text(rng)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "expr":
        return random_expression(rng)
    if depth > 2:
        return []
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng) or "k": random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a YAML tree, in a stable order."""
    found: list[tuple[Any, Any]] = []
    stack = [data]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            found.append((node, key))
            if isinstance(value, dict | list):
                stack.append(value)
    return found


def nest(value: Any, depth: int, rng: random.Random) -> Any:
    for _ in range(depth):
        value = rng.choice([[value], {"body": [value]}, {"n": value}])
    return value


NUMBERINGS = ["flat", "nested", "across", "Flat", "", None, 1, True, ["flat"]]


def mutate_table(data: Any, rng: random.Random) -> str:
    """Damage the stage-table constructs (`table:` rows, their columns, `numbering:`), which
    random slots rarely reach: a spec without a table gets one on a block item; returns the
    kind (for the counts)."""
    dicts = [c[k] for c, k in slots(data) if isinstance(c[k], dict)]
    tables = [d for d in dicts if isinstance(d.get("table"), list) and d["table"]]
    choice = rng.randrange(7)
    if not tables or choice == 0:
        target = rng.choice([d for d in dicts if "block" in d] or dicts or [data])
        target["table"] = [{"c": rng.choice(NUMBERS)} for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            target["repeat"] = rng.choice(["$c", "${c * 2}", 2])
        return "table_added"
    item = rng.choice(tables)
    rows = item["table"]
    row = rng.choice(rows)
    if choice == 1 and isinstance(row, dict) and row:
        del row[rng.choice(sorted(row, key=str))]
        return "table_column_dropped"
    if choice == 2 and isinstance(row, dict) and row:
        row[rng.choice(sorted(row, key=str))] = rng.choice(
            [random_value(rng), random_expression(rng), rng.choice(NUMBERS)]
        )
        return "table_value"
    if choice == 3:
        extra = rng.choice(["block_index", "block_count", "index", random_text(rng) or "x"])
        rows.append({**row, extra: 1} if isinstance(row, dict) else row)
        return "table_column_added"
    if choice == 4:
        item["table"] = rng.choice([[], rows * rng.choice([2, 50, 500]), random_value(rng)])
        return "table_rows"
    scope = rng.choice([item, *[d for d in dicts if "body" in d]])
    scope["numbering"] = rng.choice(NUMBERINGS)
    return "numbering"


def mutate(data: Any, rng: random.Random) -> str:
    """Apply one mutation in place; returns its kind (for the counts)."""
    places = slots(data)
    if not places:
        return "none"
    container, key = rng.choice(places)
    kind = rng.choice(
        [
            "delete",
            "type",
            "text",
            "number",
            "nest",
            "scopes",
            "name",
            "expr",
            "repeat",
            "duplicate",
            "table",
        ]
    )
    if kind == "table":
        return mutate_table(data, rng)
    if kind == "delete":
        del container[key]
    elif kind == "type":
        container[key] = random_value(rng)
    elif kind == "text":
        container[key] = random_text(rng)
    elif kind == "number":
        container[key] = rng.choice(NUMBERS)
    elif kind == "nest":
        container[key] = nest(container[key], rng.choice([3, 20, 70, 200]), rng)
    elif kind == "scopes" and isinstance(container, list):
        depth = rng.choice([5, 15, 25])  # nested scope items: deep pydantic error paths
        item = container[key]
        if rng.random() < 0.5 and isinstance(item, dict):
            item = {**item, "bogus": 1}
        for level in range(depth):
            item = {f"s{level}": {"body": [item]}}
        container[key] = item
    elif kind == "name":
        dicts = [(c, k) for c, k in places if isinstance(c, dict)]
        if dicts:
            container, key = rng.choice(dicts)
            value = container.pop(key)
            container[rng.choice(HOSTILE_NAMES)] = value
    elif kind == "expr":
        container[key] = random_expression(rng)
    elif kind == "repeat":
        target = container[key] if isinstance(container[key], dict) else container
        if isinstance(target, dict):
            target["repeat"] = rng.choice([0, 2, 1000, 10_000, 10**6])
            if rng.random() < 0.5:
                target["when"] = False
    elif kind == "duplicate" and isinstance(container, list):
        container.extend([container[key]] * rng.choice([2, 50, 500]))
    return kind


def break_syntax(text: str, rng: random.Random) -> str:
    """Text-level damage: YAML that may not parse, or parses into something odd."""
    choice = rng.randrange(6)
    if choice == 0 and text:
        cut = rng.randrange(len(text))
        return text[:cut]
    if choice == 1:
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(list("[]{}:,&*!|>'\"\t%@`")) + text[pos:]
    if choice == 2:
        return (
            text
            + "\nbomb: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(f"b{i}: &a{i} [*{'a' if i == 0 else f'a{i - 1}'}] \n" for i in range(12))
        )
    if choice == 3:
        return text.replace(": 1\n", ": " + "9" * 5000 + "\n", 1)
    if choice == 4:
        return "a: " + "[" * rng.choice([70, 5000]) + "\n" + text
    return text.replace("  ", "\t", 1)


@dataclass
class Case:
    index: int
    base: str
    mutations: list[str]
    folder: Path
    target: Path


def make_case(
    index: int, seed: int, root: Path, bases: dict[str, Any], libs: dict[str, Any]
) -> Case:
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(sorted(bases))
    folder = root / f"case{index}"
    (folder / "lib").mkdir(parents=True)
    files = {f"lib/{name}.yaml": _copy(data) for name, data in libs.items()}
    stem = base
    files[f"{stem}.yaml"] = _copy(bases[base])
    extends = bases[base].get("extends") if isinstance(bases[base], dict) else None
    target_file = f"lib/{extends}.yaml" if extends and rng.random() < 0.6 else f"{stem}.yaml"
    kinds = [mutate(files[target_file], rng) for _ in range(rng.randint(1, 3))]
    texts = {name: dump(data) for name, data in files.items()}
    if rng.random() < 0.15:
        texts[target_file] = break_syntax(texts[target_file], rng)
        kinds.append("syntax")
    if rng.random() < 0.05:
        texts[f"{rng.choice(HOSTILE_STEMS)}.yaml"] = texts.pop(f"{stem}.yaml")
        kinds.append("stem")
    target = folder / f"{stem}.yaml"
    for name, text in texts.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        if not name.startswith("lib/"):
            target = path
    return Case(index, base, kinds, folder, target)


def _copy(data: Any) -> Any:
    return copy.deepcopy(data)


def dump(data: Any) -> str:
    """YAML text; JSON (a YAML subset) when the tree is too deep for PyYAML's emitter."""
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    except RecursionError:
        return json.dumps(data, ensure_ascii=False)


# Specs mutated beside the zoo's, for constructs no zoo spec uses (a multi-output split).
EXTRA_BASES = Path(__file__).resolve().parent / "fuzz_specs"


def zoo_texts() -> tuple[dict[str, Any], dict[str, Any]]:
    root = specs_root()
    bases = {name: yaml.safe_load((root / f"{name}.yaml").read_text()) for name in zoo_names()}
    for path in sorted(EXTRA_BASES.glob("*.yaml")):
        bases[path.stem] = yaml.safe_load(path.read_text())
    libs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((root / "lib").glob("*.yaml"))}
    return bases, libs


# ---------------------------------------------------------------------------- backend checks


def small_graph(spec: ResolvedSpec, graph: Graph) -> Graph:
    """The graph at SMALL_INPUT when the spec allows it with the same weights (a flatten
    head ties them to the size), else `graph`: forward passes run on it."""
    if len(graph.node(graph.inputs[0]).shape) != 3:
        return graph
    try:
        small = lower(spec, None, SMALL_INPUT)
    except SpecError:
        return graph
    return small if totals(small).trainable == totals(graph).trainable else graph


def check_torch(backend: Backend, spec: ResolvedSpec, graph: Graph) -> None:
    """The generated module compiles, imports, instantiates and runs a forward pass whose
    output shapes are the IR's (at a small odd input size when the spec allows one)."""
    import torch

    artifact = backend.emit(spec, graph)
    source = artifact.content.decode()
    code = compile(source, artifact.filename, "exec")
    namespace: dict[str, Any] = {"__name__": f"fuzz_{graph.name}"}
    exec(code, namespace)  # the generated module: what `import` would run
    device = torch.device("meta" if totals(graph).total > HUGE_PARAMS else "cpu")
    with device:
        model = namespace[graph.name]().eval()
    run_graph = small_graph(spec, graph)
    inputs = [torch.randn(1, *run_graph.node(n).shape, device=device) for n in run_graph.inputs]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny inputs: oneDNN's per-shape setup would dominate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # oneDNN's flag switch warns about Intel GPUs
            with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
                out = model(*inputs)
    finally:
        torch.set_num_threads(threads)
    outs = out if isinstance(out, tuple) else (out,)
    got = [tuple(o.shape[1:]) for o in outs]
    want = [run_graph.node(n).shape for n in run_graph.outputs]
    if got != want:
        raise AssertionError(f"output shapes {got} != IR {want}")


def check_onnx(backend: Backend, spec: ResolvedSpec, graph: Graph) -> None:
    """The zoo's text form generates; the binary model (random weights) passes
    onnx.checker and runs in onnxruntime with the IR's output shapes."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    emit: Any = backend.emit  # the options argument is newer than the Backend protocol here
    if not emit(spec, graph, {"text": True}).content:
        raise AssertionError("empty ONNX text")
    if totals(graph).total > HUGE_PARAMS:  # the binary holds every weight
        return
    content = emit(spec, graph, {}).content
    onnx.checker.check_model(onnx.load_from_string(content))
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        n: rng.standard_normal((1, *graph.node(n).shape), dtype=np.float32) for n in graph.inputs
    }
    got = [tuple(o.shape[1:]) for o in session.run(None, feeds)]
    want = [graph.node(n).shape for n in graph.outputs]
    if got != want:
        raise AssertionError(f"output shapes {got} != IR {want}")


def check_keras(backend: Backend, spec: ResolvedSpec, graph: Graph) -> None:
    """Both styles generate (or refuse with a located error) and compile. Importing
    TensorFlow alone exceeds the per-case memory bound, so building and running them is
    batched: `run` hands every case this check passed to `run_keras_batch` (a subprocess)."""
    emit: Any = backend.emit
    for style in ("functional", "subclass"):
        artifact = emit(spec, graph, {"style": style})
        compile(artifact.content.decode(), artifact.filename, "exec")


# One check per backend: it generates what `archspec gen` would (raising the backend's
# located SpecError/BackendError when it cannot) and proves the result builds and runs.
BACKEND_CHECKS: dict[str, Callable[[Backend, ResolvedSpec, Graph], None]] = {
    "torch": check_torch,
    "onnx": check_onnx,
    "keras": check_keras,
}


# ---------------------------------------------------------------------------- running


class CaseTimeout(Exception):
    pass


@dataclass
class Outcome:
    case: Case
    status: str  # "rejected", "passed", "backend refused", or "FAIL: ..."
    seconds: float
    detail: str = ""
    checked: list[str] = field(default_factory=list)  # backends whose check passed
    keras: str = ""  # the batched Keras run: "ran", "skipped: ...", or "" (not run)


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    keras_seconds: float = 0.0  # the batched Keras subprocess, TensorFlow's import included

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status.startswith("FAIL")]

    def counts(self) -> Counter[str]:
        return Counter(o.status.split(":")[0] for o in self.outcomes)

    def mutation_counts(self) -> Counter[str]:
        return Counter(k for o in self.outcomes for k in o.case.mutations)


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(f"over {CASE_SECONDS} s")


def _invoke(args: list[str]) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    exc = result.exception
    if isinstance(exc, SystemExit):
        exc = None
    return result.exit_code, result.output + result.stderr, exc


def run_case(case: Case) -> Outcome:
    start = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    checked: list[str] = []
    try:
        status, detail = _check(case, checked)
    except CaseTimeout as exc:
        status, detail = "FAIL: hang", str(exc)
    except BaseException as exc:  # the fuzzer reports everything; it never stops early
        status, detail = f"FAIL: {type(exc).__name__}", traceback.format_exc()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    if grown > CASE_MEMORY_MB and not status.startswith("FAIL"):
        status, detail = "FAIL: memory", f"peak memory grew by {grown:.0f} MB"
    return Outcome(case, status, time.perf_counter() - start, detail, checked)


def _check(case: Case, checked: list[str]) -> tuple[str, str]:
    code, output, exc = _invoke(["validate", str(case.target)])
    if exc is not None:
        return f"FAIL: {type(exc).__name__}", "".join(traceback.format_exception(exc))
    if code not in (0, 2) or "Traceback" in output:
        return f"FAIL: exit {code}", output
    if code == 2:
        return "rejected", output
    if "library with" in output:  # valid, but not a model: nothing to generate
        return "library", output
    for args in (["summary", str(case.target)], ["graph", str(case.target)]):
        code, output, exc = _invoke(args)
        if exc is not None or code != 0:
            return f"FAIL: {args[0]}", output + (
                "".join(traceback.format_exception(exc)) if exc else ""
            )
    spec = load(case.target)
    graph = lower(spec)
    refused = []
    for name in plugins.available():
        check = BACKEND_CHECKS.get(name)
        if check is None:
            return "FAIL: no check", f"backend '{name}' has no entry in BACKEND_CHECKS"
        try:
            check(plugins.get(name), spec, graph)
        except (SpecError, BackendError) as refusal:  # a located "cannot generate this"
            refused.append(f"{name}: {refusal}")
            continue
        checked.append(name)
    return ("backend refused", "\n".join(refused)) if refused else ("passed", "")


def run(cases: int, seed: int, root: Path, start: int = 0) -> Report:
    bases, libs = zoo_texts()
    report = Report()
    for index in range(start, start + cases):
        case = make_case(index, seed, root, bases, libs)
        report.outcomes.append(run_case(case))
    begin = time.perf_counter()
    run_keras_batch(keras_sample(report.outcomes, seed, start), root)
    report.keras_seconds = time.perf_counter() - begin
    for o in report.outcomes:  # kept until the Keras batch read them
        if not o.status.startswith("FAIL"):
            shutil.rmtree(o.case.folder, ignore_errors=True)
    return report


# ---------------------------------------------------------------------------- Keras batch

KERAS_IMPORT_SECONDS = 120  # TensorFlow's import and first model, on a loaded CI machine
_SAMPLE = os.environ.get("ARCHSPEC_FUZZ_KERAS_SAMPLE", "1")
KERAS_SAMPLE = None if _SAMPLE == "all" else int(_SAMPLE)  # cases run per batch (None: all)


def keras_sample(outcomes: list[Outcome], seed: int, start: int) -> list[Outcome]:
    """The cases a batch runs through Keras: those whose Keras check passed, at most
    HUGE_PARAMS in size (building tens of millions of Keras variables takes seconds and
    finds nothing new: test_keras_zoo.py builds the big zoo models), and of those a
    seeded sample of KERAS_SAMPLE per 50 cases (1; `ARCHSPEC_FUZZ_KERAS_SAMPLE=N`, or
    `all` for every one). A batch costs about 8 CPU-seconds for TensorFlow's import and
    about 5 per case (both styles built, loaded and run, and the ONNX reference; a
    resnet18 mutant about 8), so with one case per chunk of 50 the 1,000-case run costs
    about 20 x 13 CPU-seconds more (a little over 2 minutes on 2 cores); the others are
    marked `skipped: huge` or `not sampled`."""
    eligible = []
    for o in outcomes:
        if "keras" not in o.checked:
            continue
        if totals(lower(load(o.case.target))).total > HUGE_PARAMS:
            o.keras = "skipped: huge"
        else:
            eligible.append(o)
    wanted = None if KERAS_SAMPLE is None else KERAS_SAMPLE * math.ceil(len(outcomes) / 50)
    if wanted is None or len(eligible) <= wanted:
        return eligible
    chosen = random.Random(f"{seed}:keras:{start}").sample(eligible, wanted)
    for o in eligible:
        if o not in chosen:
            o.keras = "not sampled"
    return sorted(chosen, key=lambda o: o.case.index)


def run_keras_batch(outcomes: list[Outcome], root: Path) -> None:
    """Build and run every accepted case's Keras models (both styles) in ONE subprocess,
    so TensorFlow is imported once per batch and its memory never counts towards a case's
    budget (`keras_case` says what is checked). A case that fails, or that the subprocess
    never reported on (it died or ran out of time), becomes `FAIL: keras run`, with the
    case named by `summarize`."""
    if not outcomes:
        return
    job, results = root / "keras_batch.json", root / "keras_batch.jsonl"
    job.write_text(json.dumps([str(o.case.target) for o in outcomes]))
    results.unlink(missing_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--keras-batch", str(job), str(results)]
    limit = KERAS_IMPORT_SECONDS + 2 * CASE_SECONDS * len(outcomes)
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=limit, check=False
        )
        ended = f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        ended = f"the batch ran over its {limit} s"
    lines = results.read_text().splitlines() if results.exists() else []
    reported = [json.loads(line) for line in lines]
    for i, o in enumerate(outcomes):
        if i >= len(reported):
            o.status = "FAIL: keras run"
            o.detail = f"the Keras subprocess stopped at or before this case ({ended})"
            continue
        status, detail, seconds = reported[i]
        o.seconds += seconds
        if status.startswith("FAIL"):
            o.status, o.detail = "FAIL: keras run", f"{status}\n{detail}"
        else:
            o.keras = status


def keras_batch_main(job: Path, results: Path) -> None:
    """The subprocess of `run_keras_batch`: one JSON line per case, written as it ends."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # tiny inputs; xdist's workers
    tf.config.threading.set_inter_op_parallelism_threads(1)  # share the cores
    signal.signal(signal.SIGALRM, _alarm)
    with results.open("a", encoding="utf-8") as out:
        for n, target in enumerate(json.loads(job.read_text())):
            signal.alarm(2 * CASE_SECONDS)  # two styles
            begin = time.perf_counter()
            try:
                result = keras_case(Path(target), n)
            except CaseTimeout as exc:
                result = ("FAIL: hang", str(exc))
            except BaseException as exc:
                result = (f"FAIL: {type(exc).__name__}", traceback.format_exc())
            finally:
                signal.alarm(0)
            out.write(json.dumps([*result, time.perf_counter() - begin]) + "\n")
            out.flush()
            keras.backend.clear_session()


def keras_case(target: Path, n: int) -> tuple[str, str]:
    """Both styles of the spec at `target`, as `archspec gen` writes them, built at a small
    input size, loaded with one seeded WeightSet through the weight adapter, run forward
    (inference) on a seeded input: the output shapes must be the IR's, the weights must
    come back bitwise, and the outputs must equal onnxruntime's on the ONNX backend's model
    with the same weights (the random-spec property tests' bound: relative L2 <= 1e-5 and
    max abs <= 1e-4 x max(1, max |ref|), over finite reference outputs)."""
    import keras
    import numpy as np
    from archspec_keras.emitter import STYLES, emit_source, factory_shapes
    from archspec_keras.weights import from_keras, load_into

    from archspec.backend import Artifact
    from archspec.codegen.printers import import_artifact
    from archspec.weights import WeightSet

    spec = load(target)
    graph = lower(spec)
    run_graph = small_graph(spec, graph)
    weights = WeightSet.random(run_graph, seed=0)
    rng = np.random.default_rng(n)
    xs = [
        rng.standard_normal((1, *run_graph.node(i).shape), dtype=np.float32)
        for i in run_graph.inputs
    ]
    want = onnx_outputs(spec, run_graph, weights, xs, target.parent)
    shapes = [run_graph.node(o).shape for o in run_graph.outputs]
    for style in STYLES:
        artifact = Artifact(f"{graph.name}.py", emit_source(spec, graph, style).encode())
        module = import_artifact(artifact, f"fuzz_keras_{n}_{style}_{graph.name}", target.parent)
        model = load_into(
            getattr(module, graph.name)(**factory_shapes(run_graph)), weights, run_graph
        )
        feed = [np.moveaxis(x, 1, -1) if x.ndim == 4 else x for x in xs]
        outs = model(feed[0] if len(feed) == 1 else feed, training=False)
        got = [
            keras.ops.convert_to_numpy(o)
            for o in (outs if isinstance(outs, list | tuple) else [outs])
        ]
        got = [np.moveaxis(g, -1, 1) if g.ndim == 4 else g for g in got]
        if [g.shape[1:] for g in got] != shapes:
            return (
                "FAIL: shapes",
                f"{style}: output shapes {[g.shape[1:] for g in got]} != IR {shapes}",
            )
        if not from_keras(model, run_graph).equal(weights):
            return "FAIL: weights", f"{style}: the weights did not come back bitwise"
        for name, g, w in zip(run_graph.outputs, got, want or [], strict=False):
            problem = value_problem(g, w)
            if problem:
                return "FAIL: values", f"{style}, output '{name}' vs onnxruntime: {problem}"
    return "ran", ""


def onnx_outputs(
    spec: ResolvedSpec, graph: Graph, weights: Any, xs: list[Any], folder: Path
) -> list[Any] | None:
    """onnxruntime's outputs for the ONNX backend's model with `weights`; None without it."""
    if "onnx" not in plugins.available():
        return None
    import onnxruntime as ort

    path = folder / "weights.npz"
    weights.save(path)
    content = plugins.get("onnx").emit(spec, graph, {"weights": str(path)}).content
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(graph.inputs, xs, strict=True)))


def value_problem(got: Any, want: Any) -> str | None:
    import numpy as np

    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    finite = np.isfinite(want)
    if not finite.any():
        return None
    diff = got[finite] - want[finite]
    rel = np.linalg.norm(diff) / max(np.linalg.norm(want[finite]), 1e-30)
    worst = np.abs(diff).max() / max(1.0, np.abs(want[finite]).max())
    if not (rel <= 1e-5 and worst <= 1e-4):  # NaN fails too
        return f"relative L2 {rel:.3g}, max abs {worst:.3g} (scaled)"
    return None


def summarize(report: Report) -> Iterator[str]:
    times = sorted(o.seconds for o in report.outcomes)
    yield f"cases: {len(report.outcomes)}  " + "  ".join(
        f"{k}: {v}" for k, v in sorted(report.counts().items())
    )
    yield "mutations: " + "  ".join(
        f"{k}: {v}" for k, v in sorted(report.mutation_counts().items())
    )
    if times:
        yield f"seconds per case: median {times[len(times) // 2]:.3f}, max {times[-1]:.2f}"
    keras = Counter(o.keras for o in report.outcomes if o.keras)
    yield f"keras batch: {report.keras_seconds:.1f} s  " + "  ".join(
        f"{k}: {v}" for k, v in sorted(keras.items())
    )
    for o in sorted(report.outcomes, key=lambda o: -o.seconds)[:3]:
        yield f"slow: case {o.case.index} ({o.case.base}, {o.case.mutations}) {o.seconds:.2f} s"
    for o in report.failures:
        yield f"--- case {o.case.index} ({o.case.base}, {o.case.mutations}): {o.status}\n{o.detail}"


if __name__ == "__main__":
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument(
        "--keras-batch", nargs=2, metavar=("JOB", "RESULTS"), help=argparse.SUPPRESS
    )
    ns = parser.parse_args()
    if ns.keras_batch:
        keras_batch_main(Path(ns.keras_batch[0]), Path(ns.keras_batch[1]))
        sys.exit(0)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with tempfile.TemporaryDirectory(prefix="archspec_fuzz_") as tmp:
        result = run(ns.cases, ns.seed, Path(tmp), ns.start)
        for line in summarize(result):
            print(line)
    sys.exit(1 if result.failures else 0)
