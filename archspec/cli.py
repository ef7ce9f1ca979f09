"""The `archspec` command line.

Imports are deferred into each command so `archspec --help` stays instant and `list`,
`validate` and `summary` never load a deep-learning framework. Every invalid input ends
as one rendered error on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from types import FrameType

    from archspec.ir import Graph
    from archspec.registry import ResolvedSpec

EXIT_INVALID = 2


def say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print a line of ours that may quote spec text: control characters are escaped."""
    from archspec.text import for_terminal

    click.echo(for_terminal(text), err=err, nl=nl)


def cell(text: str) -> Any:
    """Spec text for a rich table: escaped like `say`, and never parsed as rich markup."""
    from rich.text import Text

    from archspec.text import for_terminal

    return Text(for_terminal(text))


@contextmanager
def reported() -> Iterator[None]:
    """Turn our errors into one clean message and exit 2 (1 for I/O trouble)."""
    from archspec.backend import BackendError
    from archspec.errors import SpecError

    try:
        yield
    except SpecError as exc:
        say(exc.render(), err=True)
        sys.exit(EXIT_INVALID)
    except BackendError as exc:
        say(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    except OSError as exc:
        say(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:
        if not interrupted(exc):
            raise
        # Ctrl-C inside a C extension's import (TensorFlow's) comes back as that import's
        # own error, caused by the KeyboardInterrupt: stop as click does for a plain one.
        say("Aborted!", err=True)
        sys.exit(1)


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` was caused, directly or down its chain, by a KeyboardInterrupt."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


def parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    from archspec.params import parse_override

    out: dict[str, Any] = {}
    for text in values:
        try:
            key, value = parse_override(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--set") from None
        out[key] = value
    return out


def build(
    target: str, sets: tuple[str, ...] = (), input_size: tuple[int, int] | None = None
) -> tuple[ResolvedSpec, Graph]:
    from archspec.lower import lower
    from archspec.registry import load

    spec = load(target)
    return spec, lower(spec, parse_sets(sets), input_size)


set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override an architecture parameter (repeatable).",
)
strict_option = click.option(
    "--strict", is_flag=True, help="Treat warnings (unused items...) as errors: exit 2."
)

plot_option = click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OUT.png",
    help="Plot every probe's error along the network (needs archspec[plot]: matplotlib).",
)


def warned(graph: Graph, strict: bool) -> bool:
    """Print the graph's warnings on stderr; True if `--strict` makes them fatal."""
    for warning in graph.warnings:
        say(warning.render(strict=strict), err=True)
    return strict and bool(graph.warnings)


size_option = click.option(
    "--input-size",
    nargs=2,
    type=click.IntRange(min=1),
    default=None,
    metavar="H W",
    help="Input height and width (default: the spec's).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archspec")
def main() -> None:
    """archspec: declare an architecture once, generate PyTorch / Keras / ONNX, prove parity."""


@main.command("list")
def list_cmd() -> None:
    """List the built-in zoo: name, description, trainable parameters."""
    from rich.console import Console
    from rich.table import Table

    from archspec.analysis import totals
    from archspec.registry import zoo_names

    table = Table(title="archspec zoo")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("params", justify="right")
    with reported():
        for name in zoo_names():
            spec, graph = build(name)
            table.add_row(name, cell(spec.description), f"{totals(graph).trainable:,}")
    Console().print(table)


@main.command()
@click.argument("targets", nargs=-1, required=True, metavar="FILE|NAME...")
@set_option
@size_option
@strict_option
def validate(
    targets: tuple[str, ...],
    sets: tuple[str, ...],
    input_size: tuple[int, int] | None,
    strict: bool,
) -> None:
    """Check specs (files or zoo names); exit 2 if any is invalid.

    Warnings (valid but suspicious: an unused item...) are printed and do not fail
    unless --strict."""
    from archspec.analysis import totals
    from archspec.errors import SpecError
    from archspec.lower import lower
    from archspec.registry import load

    bad = 0
    for target in targets:
        try:
            spec = load(target)
            if spec.body is None or spec.abstract:
                say(f"ok  {spec.file}: library with {len(spec.blocks)} block(s)")
                continue
            graph = lower(spec, parse_sets(sets), input_size)
            if warned(graph, strict):
                bad += 1
                continue
            t = totals(graph)
            say(
                f"ok  {spec.file}: {len(graph.nodes)} nodes, {t.trainable:,} trainable "
                f"+ {t.non_trainable:,} non-trainable parameters"
            )
        except SpecError as exc:
            say(exc.render(), err=True)
            bad += 1
    if bad:
        sys.exit(EXIT_INVALID)


@main.command()
@click.argument("target", metavar="NAME|FILE")
@set_option
@size_option
@strict_option
def summary(
    target: str, sets: tuple[str, ...], input_size: tuple[int, int] | None, strict: bool
) -> None:
    """Per-op table (name, op, output shape, params) with totals."""
    from rich.console import Console
    from rich.table import Table

    from archspec.analysis import rows, totals

    with reported():
        _, graph = build(target, sets, input_size)
    if warned(graph, strict):
        sys.exit(EXIT_INVALID)
    table = Table(title=cell(f"{graph.name}: {graph.description}"), title_justify="left")
    table.add_column("name")
    table.add_column("op")
    table.add_column("output shape", justify="right")
    table.add_column("params", justify="right")
    for row in rows(graph):
        shape = "(N, " + ", ".join(map(str, row.shape)) + ")"
        params = (
            f"shared: {row.shared_with}"
            if row.shared_with
            else (f"{row.params:,}" if row.params else "")
        )
        table.add_row(cell(row.name), row.op, shape, params)
    t = totals(graph)
    console = Console()
    console.print(table)
    console.print(f"trainable params:     {t.trainable:,}")
    console.print(f"non-trainable params: {t.non_trainable:,}")
    console.print(f"total params:         {t.total:,}")
    console.print(f"FLOPs (multiply-adds): {t.macs:,} ({t.macs / 1e9:.2f} G)")


@main.command()
def ops() -> None:
    """List the spec language's ops: name, fields (required ones marked *), what it does."""
    from archspec.catalog import OP_DOCS
    from archspec.lower import COMMON_FIELDS
    from archspec.spec import OP_MODELS

    width = max(map(len, OP_MODELS))
    for name in sorted(OP_MODELS):
        say(f"{name:<{width}}  {OP_DOCS.get(name, '')}".rstrip())
        fields = [
            f + ("*" if info.is_required() else "")
            for f, info in OP_MODELS[name].model_fields.items()
            if f not in COMMON_FIELDS or f == "outputs"  # per item, but split's own
        ]
        if fields:
            say(f"{'':<{width}}  fields: {', '.join(fields)}")
    say(
        "\n* required. Every op also takes name, input/inputs, when and doc; ops with "
        "weights take share. Details: docs/spec.md"
    )


@main.command()
def schema() -> None:
    """Print the JSON Schema of the spec format (for editor completion)."""
    import json

    from archspec.schema import spec_json_schema

    click.echo(json.dumps(spec_json_schema(), indent=2, sort_keys=True))


@main.command()
@click.argument("target", metavar="NAME|FILE")
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
@set_option
@size_option
def graph(target: str, fmt: str, sets: tuple[str, ...], input_size: tuple[int, int] | None) -> None:
    """Print the op graph as Mermaid or Graphviz dot."""
    from archspec.render import to_dot, to_mermaid

    with reported():
        _, g = build(target, sets, input_size)
    say((to_mermaid if fmt == "mermaid" else to_dot)(g), nl=False)


@main.command()
@click.argument("target", required=False, metavar="NAME|FILE")
@click.option(
    "--backend",
    "backends",
    multiple=True,
    help="Backend to generate for (repeatable; default with --all: every installed one).",
)
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: generated/<backend>; with --all, the root of the tree).",
)
@click.option("--all", "all_specs", is_flag=True, help="Generate the whole zoo.")
@click.option(
    "--check", is_flag=True, help="With --all: write nothing, exit 1 if any file is stale."
)
@click.option("--style", default=None, help="Source style, e.g. keras: functional|subclass.")
@click.option("--fold-bn", is_flag=True, help="onnx: fold BatchNorm into the preceding conv.")
@click.option("--functions", is_flag=True, help="onnx: one model-local function per block type.")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="onnx: weights to embed (a WeightSet .npz) instead of seeded random ones.",
)
@click.option(
    "--force", is_flag=True, help="Replace existing files even if archspec did not write them."
)
@click.option(
    "--prune",
    is_flag=True,
    help="With --all -o DIR: remove files archspec wrote there that no spec generates now.",
)
@set_option
@strict_option
def gen(
    target: str | None,
    backends: tuple[str, ...],
    out_dir: str | None,
    all_specs: bool,
    check: bool,
    style: str | None,
    fold_bn: bool,
    functions: bool,
    weights: str | None,
    force: bool,
    prune: bool,
    sets: tuple[str, ...],
    strict: bool,
) -> None:
    """Generate source for a spec (or, with --all, for the whole zoo).

    archspec only replaces or removes files it wrote (recorded in the folder's
    .archspec-manifest.json, or carrying its header); your own files are left alone."""
    from archspec import backend as plugins
    from archspec.generate import check_zoo, generate_one, generate_zoo

    if all_specs == (target is not None):
        raise click.UsageError("give a spec NAME|FILE or --all (not both)")
    if check and not all_specs:
        raise click.UsageError("--check works with --all")
    if prune and not all_specs:
        raise click.UsageError("--prune works with --all")
    if strict and all_specs:
        raise click.UsageError("--strict applies to one spec (the zoo has no warnings)")
    if sets and all_specs:
        raise click.UsageError("--set applies to one spec; the zoo is generated with its defaults")
    given = {"style": style, "fold_bn": fold_bn or None, "functions": functions or None}
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if weights is not None:
        options["weights"] = weights
    if options and all_specs:
        flags = ", ".join(plugins.OPTION_FLAGS[k] for k in options)
        raise click.UsageError(
            f"{flags}: the zoo is generated in every style its backends define; "
            "give one spec to choose options"
        )
    with reported():
        names = list(backends) or (plugins.available() if all_specs else [])
        if not names:
            raise click.UsageError(
                "choose a backend with --backend "
                f"(installed: {', '.join(plugins.available()) or 'none'})"
            )
        chosen = [plugins.get(n) for n in names]
        echo: Callable[[str], None] = click.echo
        if check:
            stale = check_zoo(chosen, out_dir)
            if stale:
                again = " ".join(
                    ["archspec gen --all", *(f"--backend {n}" for n in backends)]
                    + ([f"-o {out_dir}"] if out_dir else [])
                )
                echo(f"stale generated files (run `{again}`):")
                for line in stale:
                    echo(f"  {line}")
                sys.exit(1)
            root = Path(out_dir or "generated")
            folders = sorted(str(root / v.folder) for be in chosen for v in be.zoo_variants)
            echo(f"fresh: {', '.join(folders)}")
        elif all_specs:
            generate_zoo(chosen, out_dir, echo, prune=prune)
        else:
            assert target is not None
            shown: list[Graph] = []

            def check(graph: Graph) -> None:
                if not shown:  # once, not once per backend
                    shown.append(graph)
                    if warned(graph, strict):
                        sys.exit(EXIT_INVALID)

            for be in chosen:
                generate_one(
                    be, target, parse_sets(sets), options, out_dir, echo, force=force, check=check
                )


@main.command()
@click.argument("target", metavar="NAME|FILE")
@click.option(
    "--backends",
    "backend_list",
    default=None,
    metavar="A,B,...",
    help="Backends to compare, the first is the reference (default: torch64, torch in "
    "float64, then every installed one).",
)
@click.option(
    "--mode",
    type=click.Choice(["inference", "train", "grad"]),
    default="inference",
    show_default=True,
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default=None,
    help="What the backends compute in (default: float32 for inference, float64 for train "
    "and grad, where fp32 rounding alone exceeds the tolerance).",
)
@size_option
@click.option("--batch", type=click.IntRange(min=1, max=4096), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Weights and input seed.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Max abs error, times max(1, max|reference|).")  # fmt: skip
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Relative L2 error.")  # fmt: skip
@click.option("--per-op", is_flag=True, help="Probe every op, not only block outputs.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the full report as JSON.")  # fmt: skip
@plot_option
@set_option
def parity(
    target: str,
    backend_list: str | None,
    mode: str,
    device: str,
    dtype: str | None,
    input_size: tuple[int, int] | None,
    batch: int,
    seed: int,
    atol: float,
    rtol: float,
    per_op: bool,
    json_out: str | None,
    plot: str | None,
    sets: tuple[str, ...],
) -> None:
    """Run the same weights and input through several backends and compare.

    Exit 0 when every backend matches the reference within tolerance, 1 when one does not
    (naming the first divergent node and its spec location), 2 on invalid input."""
    from archspec.parity import ParityError, Tolerance, get_runner, run_parity, runner_names

    with reported():
        spec, graph = build(target, sets, input_size)
        try:
            if plot is not None:
                require_plot()
            names = (
                [n.strip() for n in backend_list.split(",") if n.strip()]
                if backend_list
                else sorted(runner_names(), key=lambda n: (n != "torch64", n != "torch", n))
            )
            runners = [get_runner(n) for n in names]
            for runner in runners:
                why = runner.available()
                if why is not None:
                    raise ParityError(
                        f"backend '{runner.name}' cannot run: {why} "
                        f"(pip install 'archspec[{runner.extra}]')"
                    )
                if mode not in runner.modes:
                    raise ParityError(f"backend '{runner.name}' has no {mode} mode")
                if device not in runner.devices:
                    raise ParityError(f"backend '{runner.name}' cannot run on {device} here")
            reports = run_parity(
                spec,
                graph,
                runners,
                mode=mode,  # type: ignore[arg-type]
                batch=batch,
                seed=seed,
                per_op=per_op,
                device=device,
                tol=Tolerance(atol=atol, rtol=rtol),
                progress=lambda line: click.echo(line, err=True),
                dtype=dtype,  # type: ignore[arg-type]
            )
        except ParityError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    _print_parity(graph.name, mode, reports, Tolerance(atol=atol, rtol=rtol))
    if plot is not None:
        write_plot(plot, graph, reports, Tolerance(atol=atol, rtol=rtol), f"{graph.name} ({mode})")
    if json_out is not None:
        import json

        from archspec.generate import write_atomic

        body = {
            "spec": graph.name,
            "mode": mode,
            "device": device,
            "batch": batch,
            "seed": seed,
            "tolerance": {"atol": atol, "rtol": rtol},
            "pairs": [r.as_dict() for r in reports],
        }
        with reported():
            write_atomic(Path(json_out), (json.dumps(body, indent=2) + "\n").encode())
    if not all(r.passed for r in reports):
        sys.exit(1)


def require_plot() -> None:
    """Exit 2 at once, naming the extra, when --plot cannot work (before the long run)."""
    from archspec.plot import PlotError, require

    try:
        require()
    except PlotError as exc:
        say(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)


def write_plot(path: str, graph: Graph, reports: list[Any], tol: Any, title: str) -> None:
    from archspec.plot import write_plot as write

    with reported():
        write(Path(path), graph, reports, tol, title)
    click.echo(f"wrote {path}", err=True)


def _print_parity(name: str, mode: str, reports: list[Any], tol: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for report in reports:
        table = Table(title=f"{name}: {report.other} vs {report.reference} ({mode})")
        for column in ("value", "max abs", "max rel", "rel L2", "ok"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for key, e in report.outputs.items():
            ok = "yes" if tol.check(e) else "NO"
            table.add_row(
                escape(key), f"{e.max_abs:.2e}", f"{e.max_rel:.2e}", f"{e.rel_l2:.2e}", ok
            )
        console.print(table)
        div = report.first_divergence
        if div is None:
            console.print(f"{len(report.probes)} probes agree; result: [green]PASS[/green]")
        else:
            block = f" (output of block {escape(div.block)})" if div.block else ""
            console.print(
                f"[red]FAIL[/red]: first divergence at {escape(div.node)} [{escape(div.op)}]"
                f"{block}: max abs {div.errors.max_abs:.3e}, rel L2 {div.errors.rel_l2:.3e}"
            )
            if div.where:
                console.print(f"  declared at {escape(div.where)}")


@main.command()
@click.argument("checkpoint", type=click.Path(), metavar="CHECKPOINT")
@click.option("--spec", "target", required=True, metavar="NAME|FILE",
              help="The architecture the checkpoint holds weights for.")  # fmt: skip
@click.option("--from", "source", required=True, metavar="FRAMEWORK",
              help="What wrote the checkpoint: torch (a state_dict file) or keras "
              "(.keras or .weights.h5).")  # fmt: skip
@click.option("--to", "dest", required=True, metavar="FRAMEWORK",
              help="What to write: torch, keras (functional style), keras_subclass or "
              "onnx.")  # fmt: skip
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (created if needed).")  # fmt: skip
@click.option("--input-size", nargs=2, type=click.IntRange(min=1), default=None, metavar="H W",
              help="Input size of the written model (ONNX fixes it; the Keras factory's "
              "default) and of the parity check (default: the spec's).")  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1, max=4096), default=2, show_default=True,
              help="Batch size of the parity check.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Parity input seed.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Max abs error, times max(1, max|reference|).")  # fmt: skip
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="Relative L2 error.")  # fmt: skip
@click.option(
    "--force", is_flag=True, help="Replace existing files even if archspec did not write them."
)
@plot_option
@set_option
def port(
    checkpoint: str,
    target: str,
    source: str,
    dest: str,
    out_dir: str,
    input_size: tuple[int, int] | None,
    batch: int,
    seed: int,
    atol: float,
    rtol: float,
    force: bool,
    plot: str | None,
    sets: tuple[str, ...],
) -> None:
    """Convert a real checkpoint to another framework, then prove it with parity.

    Reads CHECKPOINT (a torch state_dict file, or a Keras .keras / .weights.h5 file),
    checks its names and shapes against the spec (a misfit is refused with every
    difference, and nothing is written), writes the target into the output folder
    (torch: <spec>.py + <spec>.pt; keras: <spec>.py + <spec>.weights.h5; onnx:
    <spec>.onnx), then runs the source model holding the checkpoint's weights against
    the written files on a seeded input. Exit 0 when they agree within tolerance, 1 when
    not, 2 on invalid input."""
    import time
    from contextlib import ExitStack

    from archspec.isolated import Isolated
    from archspec.parity import ParityError, Tolerance, get_runner, parity_request, run_request
    from archspec.port import (
        PortError,
        check_pair,
        get_porter,
        place_all,
        to_weights,
    )

    def note(line: str) -> None:
        click.echo(line, err=True)

    def timed(what: str, start: float) -> None:
        note(f"  {what}: {time.perf_counter() - start:.2f} s")

    tol = Tolerance(atol=atol, rtol=rtol)
    path, folder = Path(checkpoint), Path(out_dir)
    with reported(), ExitStack() as cleanup:
        try:
            spec, graph = build(target, sets, input_size)
            check_pair(source, dest)
            reader, writer = get_porter(source), get_porter(dest)
            if not reader.reads:
                raise PortError(f"{source} is a target only: port from torch or keras")
            if plot is not None:
                require_plot()
            reference = get_runner(reader.reference)
            if reader.isolated_reference:  # it imports its framework while we read and convert
                reference = cleanup.enter_context(Isolated(reference))
                reference.start()
            start = time.perf_counter()
            note(f"reading {checkpoint} ({source}) ...")
            found = reader.read(path, spec, graph)
            for line in found.notes:
                note(f"  {line}")
            weights = to_weights(found, graph, path)
            timed(f"{len(weights)} tensors, {weights.size:,} values", start)
            request = parity_request(spec, graph, batch=batch, seed=seed, weights=weights)
            if isinstance(reference, Isolated):
                reference.submit(request)
            start = time.perf_counter()
            note(f"converting to {dest} ...")
            artifacts = writer.write(weights, spec, graph)
            timed("converted", start)
            start = time.perf_counter()
            place_all(folder, artifacts, force, lambda line: note(f"  {line}"))
            timed("written", start)
            reports = run_request(
                request, [reference, writer.runner(folder, artifacts)], tol=tol, progress=note
            )
        except (PortError, ParityError) as exc:
            say(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    _print_parity(graph.name, "inference", reports, tol)
    if plot is not None:
        write_plot(plot, graph, reports, tol, f"{graph.name}: port {source} -> {dest}")
    if not all(r.passed for r in reports):
        sys.exit(1)


def run() -> None:
    """The `archspec` console script: `main`, then an exit that skips collecting the heap.

    Once a command has imported TensorFlow, the interpreter's final garbage collections
    take about 1 s (`import keras`, then exit: 0.9 s of 4.2 s). By then the command's work
    is done and its files are written and closed, so the objects still alive are frozen
    (`gc.freeze`: never collected again) and the exit takes 0.1 s. Not part of `main`,
    which tests call in their own long-lived process."""
    import gc
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _ctrl_c)
    try:
        main()
    finally:
        gc.freeze()


_redelivering = threading.Event()  # a deferred Ctrl-C is on its way (at most one)


def _ctrl_c(signum: int, frame: FrameType | None) -> None:
    """Python's own Ctrl-C, deferred where it does harm, and delivered again a moment
    later (until it lands where it can stop the command cleanly, with "Aborted!"):
    - during an import: an extension module interrupted in its initialization can crash
      the interpreter (jaxlib, which Keras imports, aborts or segfaults) or fail with an
      ImportError instead (TensorFlow);
    - inside a garbage-collection callback (jax registers one), where Python prints the
      KeyboardInterrupt as "Exception ignored" and drops it, and the command goes on."""
    import gc
    import os
    import signal

    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code.co_filename.startswith("<frozen importlib"):
            if not _redelivering.is_set():
                _redelivering.set()
                threading.Timer(0.05, _deliver, (os.getpid(), signal.SIGINT)).start()
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def _deliver(pid: int, signum: int) -> None:
    import os

    _redelivering.clear()
    os.kill(pid, signum)


if __name__ == "__main__":
    run()
