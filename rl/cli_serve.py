"""``rl serve CHECKPOINT_OR_FILE.onnx [--host] [--port] [--max-batch] [--max-wait-ms]
[--workers] [--token] [--max-body-bytes] [--backend inline|ray] [--address] [--replicas]``:
an HTTP JSON service over an ONNX policy.

A ``.onnx`` file is served with its ``FILE.json`` sidecar. Anything else is taken for a
checkpoint and exported first by ``rl export --format onnx`` in a child process (so the
serving process never imports torch) into a temporary directory that is removed when
the server stops. The app (``rl.serve.server``) runs under uvicorn: one process by
default, ``--workers N`` uvicorn worker processes (each its own onnxruntime session).
SIGTERM (or Ctrl-C) stops accepting connections, drains the requests in flight and
exits 0. ``--backend ray`` deploys the same app on Ray Serve instead (``rl.serve.ray_serve``:
``--replicas`` replicas on ``--address``'s cluster or a local Ray). ``rl.cli`` owns the
parser and the error handling.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

BACKENDS = ("inline", "ray")
"""Where ``rl serve`` runs the app: embedded (uvicorn, this process) or on Ray Serve."""


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="serve a policy over HTTP (POST /v1/actions)",
                       description="Serve a checkpoint's policy (exported to ONNX first) or an "
                       "exported .onnx file as an HTTP JSON service: POST /v1/actions "
                       "{\"obs\": ...}, GET /healthz, GET /v1/metadata. Requests arriving "
                       "together run as one onnxruntime batch. Needs the rl[serve] extra (and "
                       "rl[ray] for --backend ray: a Ray Serve deployment).")
    s.add_argument("model", metavar="CHECKPOINT_OR_EXPORTED_FILE",
                   help="a checkpoint, or a .onnx file written by rl export (with its "
                   "FILE.json sidecar)")
    s.add_argument("--host", default="127.0.0.1", help="the address to bind (127.0.0.1; "
                   "0.0.0.0 listens on every interface)")
    s.add_argument("--port", type=int, default=8000, help="the port (8000)")
    s.add_argument("--max-batch", type=int, default=64, help="the most observations run in "
                   "one onnxruntime call (64)")
    s.add_argument("--max-wait-ms", type=float, default=2.0, help="how long the first "
                   "request of a batch waits for others to join it (2 ms)")
    s.add_argument("--workers", type=int, default=None, help="uvicorn worker processes, "
                   "each with its own onnxruntime session (--backend inline; 1)")
    s.add_argument("--token", default=None, help="require the header 'Authorization: Bearer "
                   "TOKEN' on /v1/* (401 without it)")
    s.add_argument("--max-body-bytes", type=int, default=None, metavar="BYTES",
                   help="the largest request body accepted, larger ones get 413 (1 MiB)")
    s.add_argument("--backend", choices=BACKENDS, default="inline",
                   help="inline: the embedded server (uvicorn) in this process; ray: a Ray "
                   "Serve deployment, on a local Ray or --address's cluster (inline)")
    s.add_argument("--address", metavar="ADDR", default=None,
                   help="Ray cluster address (--backend ray; default: start a local Ray)")
    s.add_argument("--replicas", type=int, default=None, help="Ray Serve replicas, each "
                   "with its own onnxruntime session (--backend ray; 1)")
    s.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="for a checkpoint: import MODULE in the export first (repeatable)")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)


def _check(args) -> None:
    from rl.cli import UsageError

    if args.backend != "ray":
        for flag, value in (("--replicas", args.replicas), ("--address", args.address)):
            if value is not None:
                raise UsageError(f"{flag} needs --backend ray (a Ray Serve deployment); the "
                                 "inline backend runs --workers uvicorn processes")
    elif args.workers is not None:
        raise UsageError("--workers needs --backend inline (uvicorn processes); with "
                         "--backend ray give --replicas")
    args.workers = 1 if args.workers is None else args.workers
    args.replicas = 1 if args.replicas is None else args.replicas
    for flag, value, least in (("--port", args.port, 0), ("--max-batch", args.max_batch, 1),
                               ("--workers", args.workers, 1), ("--replicas", args.replicas, 1),
                               ("--max-body-bytes", 1 if args.max_body_bytes is None else args.max_body_bytes, 1)):
        if value < least:
            raise UsageError(f"{flag} {value}: must be at least {least}")
    if args.port > 65535:
        raise UsageError(f"--port {args.port}: must be at most 65535")
    if args.max_wait_ms < 0:
        raise UsageError(f"--max-wait-ms {args.max_wait_ms}: must be at least 0")
    if not os.path.exists(args.model):
        raise UsageError(f"{args.model}: no such checkpoint or file")
    if args.model.endswith((".pt", ".json")):
        raise UsageError(f"{args.model}: rl serve runs ONNX files (or checkpoints); export "
                         "one with rl export CHECKPOINT --format onnx -o FILE.onnx")


def _export(checkpoint: str, folder: str, imports: list[str]) -> tuple[str, int]:
    """``rl export --format onnx`` in a child process: the file and the exit status."""
    path = os.path.join(folder, "policy.onnx")
    cmd = [sys.executable, "-m", "rl.cli", "export", checkpoint, "--format", "onnx",
           "-o", path]
    for module in imports:
        cmd += ["--import", module]
    print(f"rl serve: exporting {checkpoint} to ONNX ({path})", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=2)  # its report goes to our stderr
    return path, done.returncode


def cmd_serve(args) -> int:
    from rl.cli import UsageError

    _check(args)
    try:
        import uvicorn

        from rl.serve.server import DEFAULT_MAX_BODY_BYTES, OPTIONS_ENV, create_app
    except ImportError as e:
        raise UsageError(f"rl serve needs the {e.name!r} package: pip install "
                         "'rl[serve]'") from None
    if args.backend == "ray":
        try:
            from ray import serve  # noqa: F401

            from rl.serve.ray_serve import serve_on_ray
        except ImportError as e:
            raise UsageError(f"rl serve --backend ray needs Ray Serve ({e.name!r} is "
                             "missing): pip install 'rl[ray]'") from None
    folder = None
    try:
        model = args.model
        if not model.endswith(".onnx"):
            folder = tempfile.mkdtemp(prefix="rl-serve-")
            model, rc = _export(model, folder, args.imports)
            if rc != 0:  # rl export said why; its status (2: a user error) is ours
                print(f"rl serve: error: exporting {args.model} to ONNX failed (above)",
                      file=sys.stderr)
                return rc
        options = {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                   "token": args.token, "max_body_bytes": args.max_body_bytes or DEFAULT_MAX_BODY_BYTES}
        try:
            app = create_app(model, **options)  # in the workers' case: a check before forking
        except ValueError as e:
            raise UsageError(str(e)) from None
        if args.backend == "ray":
            del app
            return serve_on_ray(model, options, host=args.host, port=args.port,
                                replicas=args.replicas, address=args.address)
        # uvicorn re-raises the signal it shut down on; with this handler that is a no-op,
        # so a drained SIGTERM is a clean exit 0.
        signal.signal(signal.SIGTERM, lambda *_: None)
        common = {"host": args.host, "port": args.port, "access_log": False,
                  "log_level": "info", "timeout_graceful_shutdown": 30}
        if args.workers == 1:
            uvicorn.run(app, **common)
        else:
            del app
            os.environ[OPTIONS_ENV] = json.dumps({"model": model, **options})
            uvicorn.run("rl.serve.server:app_from_env", factory=True, workers=args.workers,
                        **common)
        return 0
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
