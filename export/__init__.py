"""edgegen.export: the workstation side, Hugging Face checkpoints to ONNX graphs and a manifest."""
from .errors import ExportError
from .exporter import export_model

__all__ = ["ExportError", "export_model"]
