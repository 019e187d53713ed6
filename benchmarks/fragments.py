"""Large fragments, worker -> driver: fresh arrays shipped by the wire vs a worker's
reusable shared-memory blocks (``rl.runtime.blocks``).

An actor on the process backend plays a rollout worker with an Atari-shaped fake env:
each of ``T`` steps it writes one row of every PPO column (uint8 observations
``[T, N, 84, 84, 4]``, actions, rewards, dones, log-probs, values), then returns the
fragment. The driver turns it into a flat train batch (the one copy any path pays) and,
on the block path, hands the block back. Per fragment it reports the median over
interleaved rounds of:

* ``write``: the actor's step-by-step column writes (fresh arrays page-fault on every
  fragment, a reused block only on its first);
* ``ship``: call sent -> the columns readable in the driver, less ``write``: what
  getting them to the driver costs;
* ``copy``: building the flat train batch from them (both paths pay it);
* ``total``: call sent -> train batch built.

    python benchmarks/fragments.py [--fragments 40] [--T 128] [--envs 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rl.runtime import make_runtime
from rl.runtime.blocks import BlockHandle, block_ring, layout_of


def _columns(T: int, N: int, alloc) -> dict[str, np.ndarray]:
    return {"obs": alloc((T, N, 84, 84, 4), np.uint8), "actions": alloc((T, N), np.int64),
            "rewards": alloc((T, N), np.float32), "terminateds": alloc((T, N), np.bool_),
            "truncateds": alloc((T, N), np.bool_), "action_logp": alloc((T, N), np.float32),
            "vf_preds": alloc((T, N), np.float32), "next_vf_preds": alloc((T, N), np.float32)}


class FakeAtariWorker:
    """Writes a fragment row by row, as ``RolloutWorker`` does, into fresh arrays or
    into a block of its ring."""

    def __init__(self, T: int, N: int):
        self.T, self.N = T, N
        self.frame = np.random.default_rng(0).integers(0, 255, (N, 84, 84, 4), np.uint8)
        self.layout = layout_of(_columns(T, N, np.empty))

    def _write(self, cols: dict[str, np.ndarray]) -> float:
        start = time.perf_counter()
        for t in range(self.T):
            cols["obs"][t] = self.frame
            for name, column in cols.items():
                if name != "obs":
                    column[t] = t
        return time.perf_counter() - start

    def plain(self) -> dict:
        cols = _columns(self.T, self.N, np.empty)
        return {"batch": cols, "write_s": self._write(cols)}

    def block(self) -> dict:
        acquired = block_ring().acquire(*self.layout)
        if acquired is None:
            raise RuntimeError("every block is held: the driver did not hand one back")
        handle, views = acquired
        return {"batch": handle, "write_s": self._write(views)}


def one(runtime, actor, method: str) -> tuple[float, float, float]:
    """(call -> columns readable in the driver, the actor's writes, the train copy)."""
    start = time.perf_counter()
    result = runtime.get(actor.call(method))
    batch = result["batch"]
    handle = batch if isinstance(batch, BlockHandle) else None
    if handle is not None:
        batch = handle.resolve()
    received = time.perf_counter()
    train = {k: np.concatenate([v.reshape(-1, *v.shape[2:])]) for k, v in batch.items()}
    if handle is not None:
        handle.release()
    copied = time.perf_counter()
    del train
    return received - start, result["write_s"], copied - received


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fragments", type=int, default=40, help="per path, interleaved")
    p.add_argument("--T", type=int, default=128)
    p.add_argument("--envs", type=int, default=8)
    args = p.parse_args()
    runtime = make_runtime("process")
    try:
        actor = runtime.spawn(FakeAtariWorker, args.T, args.envs)
        nbytes = layout_of(_columns(args.T, args.envs, np.empty))[1]
        print(f"fragment: T={args.T} x {args.envs} envs, {nbytes / 2**20:.1f} MiB")
        times: dict[str, list[tuple[float, float, float]]] = {"plain": [], "block": []}
        for method in times:  # warm-up: pages, the block's first mapping
            one(runtime, actor, method)
        for _ in range(args.fragments):
            for method, out in times.items():
                out.append(one(runtime, actor, method))
        print(f"{'path':<8} {'write ms':>9} {'ship ms':>9} {'copy ms':>9} {'total ms':>9}")
        ship = {}
        for method, samples in times.items():
            write = statistics.median(w for _, w, _ in samples) * 1e3
            ship[method] = statistics.median(r - w for r, w, _ in samples) * 1e3
            copy = statistics.median(c for _, _, c in samples) * 1e3
            total = statistics.median(r + c for r, _, c in samples) * 1e3
            print(f"{method:<8} {write:9.2f} {ship[method]:9.2f} {copy:9.2f} {total:9.2f}")
        print(f"ship time, plain / block: {ship['plain'] / ship['block']:.2f}x")
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    main()
