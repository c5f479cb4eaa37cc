"""SwiftFormer from PyTorch to the Snapdragon NPU, with per-block latency you can trust."""

__version__ = "0.1.0"
