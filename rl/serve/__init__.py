"""Trained policies outside the training process: ``rl export`` (ONNX, TorchScript).

``export_policy`` writes a self-contained inference file and its JSON sidecar and checks
the file against ``Algorithm.compute_actions`` (``rl.serve.export``).
"""

from rl.serve.export import FORMATS, AgreementError, ExportResult, export_policy

__all__ = ["FORMATS", "AgreementError", "ExportResult", "export_policy"]
