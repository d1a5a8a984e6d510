"""Tenure: customer intelligence trained on a shop's own history, served over gRPC from ONNX."""

__version__ = "0.1.0"
