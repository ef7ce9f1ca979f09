"""Names the generated Keras module owns, as data: the keras backend's `reserved_names`.

`archspec.names` refuses spec names in RESERVED_NAMES (for every kind of name, after NFKC
normalization), so generated Keras code never shadows a builtin, an import or a helper
with a module-level name (the file stem's factory, a block class), nor a
`keras.layers.Layer` / `keras.Model` attribute with a subclass-style member
(`self.<item> = ...`). The attribute
lists are literals (generating never imports Keras); tests/test_hardening.py introspects the
installed Keras to prove they cover every attribute. RESERVED is the emitter's own set for
local variables it names (`Namespace`): those are renamed (`x_1`), never refused.
"""

from __future__ import annotations

import builtins

from archspec_keras.helpers import helper_names

from archspec.names import ATTRIBUTES, PYTHON_BUILTINS, ReservedNames

# Attributes of every keras.layers.Layer (Keras 3.15; private ones: the '_' prefix).
LAYER_ATTRS = frozenset(
    [
        "activity_regularizer",
        "add_loss",
        "add_metric",
        "add_variable",
        "add_weight",
        "autocast",
        "build",
        "build_from_config",
        "built",
        "call",
        "call_signature_parameters",
        "compute_dtype",
        "compute_mask",
        "compute_output_shape",
        "compute_output_spec",
        "count_params",
        "dtype",
        "dtype_policy",
        "from_config",
        "get_build_config",
        "get_config",
        "get_weights",
        "input",
        "input_dtype",
        "input_spec",
        "load_own_variables",
        "losses",
        "metrics",
        "metrics_variables",
        "name",
        "non_trainable_variables",
        "non_trainable_weights",
        "output",
        "path",
        "quantization_mode",
        "quantize",
        "quantized_build",
        "quantized_call",
        "rematerialized_call",
        "save_own_variables",
        "set_weights",
        "stateless_call",
        "supports_jit",
        "supports_masking",
        "symbolic_call",
        "trainable",
        "trainable_variables",
        "trainable_weights",
        "variable_dtype",
        "variables",
        "weights",
    ]
)
# What keras.Model adds (a compiled, trained subclassed model and a functional one).
MODEL_ATTRS = frozenset(
    [
        "compile",
        "compile_from_config",
        "compiled",
        "compiled_loss",
        "compiled_metrics",
        "compute_loss",
        "compute_metrics",
        "distribute_reduction_method",
        "distribute_strategy",
        "evaluate",
        "export",
        "fit",
        "get_compile_config",
        "get_layer",
        "get_metrics_result",
        "get_quantization_layer_structure",
        "get_state_tree",
        "history",
        "input_shape",
        "inputs",
        "jit_compile",
        "layers",
        "load_weights",
        "loss",
        "make_predict_function",
        "make_test_function",
        "make_train_function",
        "metrics_names",
        "operations",
        "optimizer",
        "output_names",
        "output_shape",
        "outputs",
        "predict",
        "predict_function",
        "predict_on_batch",
        "predict_step",
        "reset_metrics",
        "run_eagerly",
        "save",
        "save_weights",
        "set_state_tree",
        "stateless_compute_loss",
        "steps_per_execution",
        "stop_training",
        "summary",
        "test_function",
        "test_on_batch",
        "test_step",
        "to_json",
        "train_function",
        "train_on_batch",
        "train_step",
        "unrolled_steps_per_execution",
    ]
)
GENERATED_ATTRS = frozenset({"init_args"})  # the subclass style's get_config() arguments
IMPORTS = frozenset({"keras", "layers", "math"})
HELPERS = frozenset(helper_names())  # runtime.py's classes, copied into the files that use them
# Module-level names: the spec's factory function (the file stem) and, in the subclass
# style, the block classes. Parameters and inputs are not reserved here: the emitter
# renames them where they would collide (`Namespace`), as they are arguments and locals.
MODULE_LEVEL = frozenset({"spec", "block"})

RESERVED_NAMES = (
    ReservedNames(PYTHON_BUILTINS.names, kinds=MODULE_LEVEL)
    | ReservedNames(
        {
            **{n: "an import of the generated Keras module" for n in IMPORTS},
            **{n: "a helper of the generated Keras module" for n in HELPERS},
        },
        kinds=MODULE_LEVEL,
    )
    | ReservedNames(  # items and shared groups are attributes of a Layer in the subclass style
        {
            **{
                n: f"keras.layers.Layer.{n} (an attribute of every Keras layer)"
                for n in LAYER_ATTRS
            },
            **{n: f"keras.Model.{n} (an attribute of every Keras model)" for n in MODEL_ATTRS},
            **{n: "an attribute of the generated Keras layers" for n in GENERATED_ATTRS},
        },
        {"_": "Keras layers' private attributes start with '_'"},
        kinds=ATTRIBUTES,
    )
)

# Names the generated code uses itself: spec names that collide are renamed where they
# become locals and arguments (builtins too: a local named `range` would break the loops
# after it; `self` and `x` are the plan's own, archspec.codegen.build.PYTHON_RESERVED).
RESERVED = (
    frozenset(dir(builtins))
    | IMPORTS
    | HELPERS
    | {"name", "inputs", "outputs", "input_shape", "kwargs"}
)
