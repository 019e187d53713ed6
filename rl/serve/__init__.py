"""Trained policies outside the training process: ``rl export`` (ONNX, TorchScript) and
``rl serve`` (an HTTP JSON service over the ONNX file).

``export_policy`` writes a self-contained inference file and its JSON sidecar and checks
the file against ``Algorithm.compute_actions`` (``rl.serve.export``); ``create_app``
builds the serving app (``rl.serve.server``). Names load on first use, so the serving
modules never import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rl.serve.export import AgreementError, ExportResult, export_policy
    from rl.serve.server import create_app

FORMATS = ("onnx", "torchscript")
"""The formats ``rl export`` writes (here, so the CLI lists them without importing torch)."""

_EXPORTS = {"AgreementError": "rl.serve.export",
            "ExportResult": "rl.serve.export", "export_policy": "rl.serve.export",
            "create_app": "rl.serve.server"}

__all__ = ["FORMATS", "AgreementError", "ExportResult", "export_policy", "create_app"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rl.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
