"""The package version (a leaf: the ONNX writer records it without importing the package's top)."""

__version__ = "0.1.0"
