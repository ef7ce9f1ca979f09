"""ONNX backend (placeholder until the ONNX backend issue lands)."""
