"""The Keras emitter as a code generator: printers, options, errors, no Keras import.

Running the generated models (equivalence with torch and keras.applications, counts,
saving, XLA, other Keras backends) is tested in test_keras_zoo.py.
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
    assert set(PRINTERS) == set(ir.OP_KINDS)


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
