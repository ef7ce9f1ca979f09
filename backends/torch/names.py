"""Names the generated torch module owns, as data: the torch backend's `reserved_names`.

`archspec.names` refuses spec names in RESERVED_NAMES (for every kind of name, after NFKC
normalization), so generated code never shadows a builtin, an import, a helper or an
`nn.Module` attribute. RESERVED is the emitter's own set for local variables it names
(`Namespace`): those are renamed (`out_1`), never refused.
"""

from __future__ import annotations

import builtins

from archspec.names import ATTRIBUTES, MODULE_AND_ARGUMENTS, PYTHON_BUILTINS, ReservedNames

# Attribute names nn.Module itself uses: a submodule under one of these names would be
# shadowed by the method (or break the module). Private ones are covered by the '_' prefix.
MODULE_ATTRS = frozenset(
    [
        "T_destination",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
        "_init_weights",
    ]
)
IMPORTS = frozenset({"torch", "nn", "F", "math", "OrderedDict", "Sequence", "Any"})
HELPERS = frozenset(
    {
        "same_sides",
        "pair",
        "PaddedConv2d",
        "PaddedMaxPool2d",
        "PaddedAvgPool2d",
        "variance_scaling_",
        "StochasticDepth",
        "LayerNorm2d",
        "Permute",
        "ChannelChunk",
        "ChannelSplit",
    }
)
ARGUMENTS = frozenset({"self", "x"})  # generated methods' arguments

RESERVED_NAMES = (
    PYTHON_BUILTINS
    | ReservedNames(
        {
            **{n: "an import of the generated torch module" for n in IMPORTS},
            **{n: "a helper of the generated torch module" for n in HELPERS},
            **{n: "an argument of the generated torch methods" for n in ARGUMENTS},
        },
        kinds=MODULE_AND_ARGUMENTS,
    )
    | ReservedNames(
        {n: f"torch.nn.Module.{n} (an attribute of every module)" for n in MODULE_ATTRS},
        {"_": "torch.nn.Module's private attributes start with '_'"},
        kinds=ATTRIBUTES,
    )
)

# Names the generated code uses itself; spec names that collide are renamed (locals only).
RESERVED = (
    frozenset(dir(builtins))
    | IMPORTS
    | HELPERS
    | ARGUMENTS
    | {"out", "prev", "step", "in_channels"}
)
