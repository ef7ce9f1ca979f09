"""The Keras emitter as a code generator: printers, options, errors, no Keras import; and
models with several inputs and outputs in both styles, run against torch.

Running the zoo's generated models (equivalence with torch and keras.applications,
counts, saving, XLA, other Keras backends) is tested in test_keras_zoo.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from archspec_keras import backend
from archspec_keras.ops import PRINTERS

from archspec import ir
from archspec.backend import BackendError
from archspec.errors import SpecError
from archspec.lower import lower
from archspec.registry import load


def source(name: str | Path, style: str = "functional", **overrides: object) -> str:
    spec = load(name)
    return backend.emit(spec, lower(spec, overrides), {"style": style}).content.decode()


def test_every_op_kind_has_a_printer() -> None:
    # a split's parts are bound by the split's own statement (`x1, x2 = ...`)
    assert set(PRINTERS) == set(ir.OP_KINDS) - {"part"}


def test_generating_never_imports_keras() -> None:
    code = (
        "import sys\n"
        "from archspec_keras import backend\n"
        "from archspec.lower import lower\n"
        "from archspec.registry import load, zoo_names\n"
        "for name in zoo_names():\n"
        "    spec = load(name)\n"
        "    for style in ('functional', 'subclass'):\n"
        "        backend.emit(spec, lower(spec), {'style': style})\n"
        "heavy = {'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_checked() -> None:
    spec = load("resnet18")
    graph = lower(spec)
    with pytest.raises(BackendError, match="no style 'oop'"):
        backend.emit(spec, graph, {"style": "oop"})
    with pytest.raises(BackendError, match="no option --fold-bn"):
        backend.emit(spec, graph, {"fold_bn": True})


def test_functional_style_reads_like_keras_applications() -> None:
    text = source("resnet50")
    signature = "def bottleneck(inputs, planes, stride=1, groups=1, base_width=64, *, name):"
    assert signature in text  # `inputs`: the shortcut reads it after the accumulator moved on
    assert 'name=f"{name}_conv1"' in text  # hierarchical, from the IR names
    assert "in_channels = inputs.shape[-1]" in text  # the block reads its input's channels
    assert "    expansion = 4\n    width = planes * base_width // 64 * groups\n" in text  # lets
    assert "if stride != 1 or in_channels != planes * expansion:" in text
    assert "for i in range(1, 6):" in text  # layer3's five alike blocks
    assert "def resnet50(num_classes=1000, input_shape=(224, 224, 3)):" in text
    # the semantic contract: torch-style padding, momentum, -inf max pool, C,H,W flatten
    assert 'layers.ZeroPadding2D(3, name="conv1_pad")' in text
    assert "momentum=0.9" in text  # 1 - torch's 0.1
    assert "PaddedMaxPooling2D(3, 2, ((1, 1), (1, 1))" in text
    assert "Permute" not in text  # the flatten follows a 1x1 global pool: no reorder needed
    preact = source("preact_resnet22")  # a flatten of a 16x16 map: C,H,W order first
    assert 'layers.Permute((3, 1, 2), name="flatten_chw")' in preact
    assert "import torch" not in text and "tensorflow" not in text


def test_keras_same_only_where_it_is_exact() -> None:
    preact = source("preact_resnet22")  # TF 'same' specs stay 'same'
    assert 'padding="same"' in preact and "ZeroPadding2D" not in preact
    resnet = source("resnet18")  # stride-2 3x3 with padding 1 is not Keras's 'same'
    assert "layers.ZeroPadding2D(1" in resnet


def test_shared_group_is_one_layer_called_at_each_use() -> None:
    text = source("rcnn")
    assert text.count('recurrent = layers.Conv2D(filters, 3, padding="same", name=') == 1
    assert "x = recurrent(x)" in text
    sub = source("rcnn", "subclass")
    assert sub.count("self.recurrent = layers.Conv2D(") == 1 and "self.recurrent(x)" in sub


def test_subclass_style_has_configs_and_a_building_factory() -> None:
    text = source("resnet18", "subclass")
    assert "class BasicBlock(keras.layers.Layer):" in text
    assert "class Resnet18(keras.Model):" in text
    assert text.count("return {**super().get_config(), **self.init_args}") == 2
    assert '@keras.saving.register_keras_serializable(package="resnet18")' in text
    assert "model(keras.ops.zeros((1, *input_shape)))" in text


def test_clashing_layer_names_are_refused(tmp_path: Path) -> None:
    spec_file = tmp_path / "clash.yaml"
    spec_file.write_text(
        "inputs: {image: [3, 8, 8]}\nbody:\n"
        "  - a_b: {op: conv, out: 4, kernel: 3}\n"
        "  - a: {body: [{b: {op: relu}}]}\n"
    )
    with pytest.raises(BackendError, match="both become the Keras layer name 'a_b'"):
        source(spec_file)


def test_unsupported_conv_is_a_located_error(tmp_path: Path) -> None:
    spec_file = tmp_path / "dilated.yaml"
    spec_file.write_text(
        "inputs: {image: [3, 16, 16]}\nbody:\n"
        "  - conv: {op: conv, out: 4, kernel: 3, stride: 2, dilation: 2, padding: same}\n"
    )
    with pytest.raises(SpecError, match="strided and dilated") as info:
        source(spec_file)
    assert info.value.render().startswith(f"{info.value.file}:3:")


# ---------------------------------------------------------------- several inputs and outputs

TWO_HEADS = """
description: Two image inputs concatenated, two heads
inputs:
  left: [3, 9, 8]
  right: [2, 9, 8]
outputs: [logits, aux]
blocks:
  Mix:
    params: {planes: int}
    body:
      - conv: {op: conv, out: $planes, kernel: 3, stride: 2, padding: 1, bias: false}
      - bn: {op: batch_norm}
      - relu: {op: relu}
body:
  - lconv: {op: conv, out: 4, kernel: 3, padding: 1, input: left}
  - rconv: {op: conv, out: 4, kernel: 1, input: right}
  - cat: {op: concat, inputs: [lconv, rconv]}
  - mix: {block: Mix, args: {planes: 6}}
  - pool: {op: global_avg_pool}
  - logits: {op: linear, out: 5}
  - aux: {op: linear, out: 3, input: pool}
"""


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("two_heads") / "two_heads.yaml"
    path.write_text(TWO_HEADS)
    return path


def test_subclass_call_takes_a_list_or_a_dict_and_returns_a_list(two_heads: Path) -> None:
    text = source(two_heads, "subclass")
    assert "    def call(self, inputs):" in text
    assert 'inputs = [inputs["left"], inputs["right"]]' in text
    assert "left, right = inputs" in text and "return [logits, x]" in text
    assert "def two_heads(left_shape=(9, 8, 3), right_shape=(9, 8, 2)):" in text
    functional = source(two_heads)
    assert "def two_heads(left_shape=(9, 8, 3), right_shape=(9, 8, 2)):" in functional
    assert 'keras.Model([left, right], [logits, x], name="two_heads")' in functional


@pytest.mark.slow
@pytest.mark.parametrize("style", ["functional", "subclass"])
def test_several_inputs_and_outputs_compute_what_torch_computes(
    style: str, two_heads: Path, tmp_path: Path
) -> None:
    """Both styles: the torch model's outputs with the same WeightSet (inputs as a list
    and as a dict by input name), bitwise weight round trip, `.keras` save and load, and
    the parity runner."""
    import keras
    import numpy as np
    import torch
    from archspec_keras import generate_module
    from archspec_keras.parity import KerasRunner
    from archspec_keras.weights import from_keras, load_into
    from archspec_torch import generate_module as torch_module
    from archspec_torch.parity import TorchRunner
    from archspec_torch.weights import load_into as torch_load_into
    from test_keras_runtime import assert_close

    from archspec.analysis import totals
    from archspec.parity import run_parity
    from archspec.weights import WeightSet

    module, graph = generate_module(two_heads, directory=tmp_path, style=style)
    weights = WeightSet.random(graph, seed=2)
    model = load_into(module.two_heads(), weights, graph)
    assert from_keras(model, graph).equal(weights)
    assert model.count_params() == totals(graph).total
    (tmp_path / "torch").mkdir()
    torch_file, _ = torch_module(two_heads, directory=tmp_path / "torch")
    reference = torch_load_into(torch_file.two_heads(), weights, graph).eval()
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(2, *graph.node(n).shape)).astype(np.float32) for n in graph.inputs]
    with torch.no_grad():
        want = [t.numpy() for t in reference(*(torch.from_numpy(x) for x in xs))]
    nhwc = [x.transpose(0, 2, 3, 1) for x in xs]
    got = model(nhwc, training=False)
    assert isinstance(got, list) and len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        assert_close(g, w)
    by_name = model(dict(zip(graph.inputs, nhwc, strict=True)), training=False)
    for a, b in zip(by_name, got, strict=True):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    model.save(tmp_path / "two_heads.keras")
    again = keras.saving.load_model(tmp_path / "two_heads.keras")
    if style == "subclass":  # our get_config (a functional config holds fresh seeds)
        assert again.get_config() == model.get_config()
    for a, b in zip(again(nhwc, training=False), got, strict=True):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    spec = load(two_heads)
    runners = [TorchRunner(name="torch64", float64=True), KerasRunner(style)]
    (report,) = run_parity(spec, lower(spec), runners, batch=2)  # type: ignore[arg-type]
    assert report.passed, report.first_divergence
    assert set(report.outputs) == {"logits", "aux"}


def test_a_joined_member_name_that_is_a_keras_attribute_is_a_located_error(
    tmp_path: Path,
) -> None:
    """Each name passes the reserved-name table, but the subclass style joins a group's
    items into one attribute: group `add` + item `weight` is `self.add_weight`."""
    spec_file = tmp_path / "joined.yaml"
    spec_file.write_text(
        "inputs: {image: [3, 8, 8]}\nbody:\n  - add:\n      body:\n        - weight: {op: relu}\n"
    )
    assert "add_weight" in source(spec_file)  # the functional style has no such attribute
    with pytest.raises(SpecError, match=r"member 'add_weight' .* keras\.layers\.Layer\.add_weight"):
        source(spec_file, "subclass")


def test_anonymous_top_level_items_are_valid_subclass_members(tmp_path: Path) -> None:
    """`self.0` is not Python: the member is `layer_0`, the layer keeps its IR name `0`."""
    path = tmp_path / "anon.yaml"
    path.write_text(
        "inputs: {image: [3, 8, 8]}\n"
        "body:\n  - {op: conv, out: 4, kernel: 3}\n  - {op: relu}\n  - {op: global_avg_pool}\n"
    )
    code = source(path, "subclass")
    compile(code, "anon.py", "exec")
    assert "self.layer_0 = layers.Conv2D(" in code and 'name="0"' in code
