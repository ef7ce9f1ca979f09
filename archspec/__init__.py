"""archspec: one typed architecture spec, generated PyTorch/Keras/ONNX code, proven parity."""

__version__ = "0.1.0"
