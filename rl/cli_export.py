"""``rl export CHECKPOINT --format onnx|torchscript -o FILE [--stochastic]``.

Loads the checkpoint on the CPU as ``rl evaluate`` does, writes the file and its
``FILE.json`` sidecar through ``rl.serve.export_policy`` and prints both with the
agreement figures. A wrong checkpoint, format or output path exits 2 before anything
loads; a file that disagrees with ``compute_actions`` exits 1 naming the largest
difference. ``rl.cli`` owns the parser and the error handling.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_FAILED = 1


def add_parser(sub) -> None:
    from rl.serve import FORMATS

    x = sub.add_parser("export", help="export a checkpoint's policy as ONNX or TorchScript",
                       description="Export a checkpoint's policy as one ONNX or TorchScript "
                       "file (normalisation, action masks, the greedy or sampled action and "
                       "the env's bounds folded in) with a FILE.json sidecar, checked against "
                       "compute_actions on 1,000 random observations. ONNX needs the "
                       "rl[export] extra.")
    x.add_argument("checkpoint")
    x.add_argument("--format", required=True, choices=FORMATS, help="onnx or torchscript")
    x.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write "
                   "(its sidecar: FILE.json)")
    x.add_argument("--policy", metavar="ID", help="multi-agent checkpoints: the policy to "
                   "export (required when the run has several)")
    x.add_argument("--stochastic", action="store_true", help="sample actions from the "
                   "policy's distribution instead of taking the greedy one (actor-critic "
                   "algorithms)")
    x.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable), e.g. one that registers the env or "
                   "model the checkpoint names")
    x.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def _check_output(path: str) -> None:
    from rl.cli import UsageError

    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise UsageError(f"-o {path} is a directory; give the file to write, e.g. "
                         f"{os.path.join(path, 'policy.onnx')}")
    if not os.path.isdir(folder):
        raise UsageError(f"-o {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"-o {path}: not writable")


def cmd_export(args) -> int:
    from rl.algorithms.algorithm import Algorithm
    from rl.checkpoint import load_state
    from rl.cli import _import_modules
    from rl.serve.export import AgreementError, export_policy

    _check_output(args.output)
    _import_modules(args.imports)
    load_state(args.checkpoint)  # a clear error for a wrong path, before any process starts
    algo = Algorithm.from_checkpoint(args.checkpoint, num_env_runners=0, backend="inline",
                                     workers=False, num_learners=0, num_gpus_per_learner=0,
                                     device="auto")
    try:
        result = export_policy(algo, args.output, args.format, stochastic=args.stochastic,
                               checkpoint=args.checkpoint, policy=args.policy)
    except AgreementError as e:
        print(f"rl export: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        algo.stop()
    a = result.agreement
    figures = ", ".join(f"{k} {v:.2g}" for k, v in a.max_diff.items() if k != "actions")
    actions = "sampled actions valid" if args.stochastic else \
        f"greedy actions identical on {a.observations - a.mismatched_actions}/{a.observations}"
    print(f"wrote {result.path} ({args.format})")
    print(f"sidecar {result.sidecar}")
    print(f"agreement with compute_actions on {a.observations} random observations: {actions}; "
          f"largest difference: {figures}")
    return 0
