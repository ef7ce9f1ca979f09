"""Run a generated Keras model under the Keras backend of the environment (KERAS_BACKEND).

test_keras_zoo.py starts it in a subprocess with a JSON job: the spec, input size,
generated module and a folder holding weights.npz and x.npy (NCHW); it writes out.npy.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import keras
import numpy as np
from archspec_keras.weights import load_into

from archspec.lower import lower
from archspec.registry import load
from archspec.weights import WeightSet


def main(job: dict) -> None:
    folder = Path(job["dir"])
    graph = lower(load(job["spec"]), input_size=(job["size"], job["size"]))
    spec = importlib.util.spec_from_file_location("generated_model", job["module"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = load_into(getattr(module, graph.name)(), WeightSet.load(folder / "weights.npz"), graph)
    x = np.load(folder / "x.npy").transpose(0, 2, 3, 1)
    np.save(folder / "out.npy", keras.ops.convert_to_numpy(model(x, training=False)))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
