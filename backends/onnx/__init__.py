"""ONNX backend: a ModelProto built directly from the Graph IR, and the ONNX weight adapter.

`backend` is the entry point (`archspec.backends: onnx`). Importing this package imports
neither onnx nor onnxruntime; building a model (`archspec_onnx.model`) imports onnx only.
"""

from __future__ import annotations

from archspec_onnx.emitter import OnnxBackend

backend = OnnxBackend()

__all__ = ["OnnxBackend", "backend"]
