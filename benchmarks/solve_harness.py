"""Shared harness of the time-to-solve benchmarks (``time_to_solve*.py``).

A benchmark script re-runs itself as ``--child IMPL`` in a fresh process per
(implementation, seed); the child prints one JSON line ``{"steps", "eval"}`` per greedy
evaluation, and ``measure`` times from launching the child until the first evaluation
at or above ``THRESHOLD``. ``rl_train_until_solved`` and ``sb3_eval_callback`` give rl
and SB3 children that protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

THRESHOLD = 475.0


def report(steps: int, ret: float, **extra: float) -> None:
    """Child side: one evaluation result, flushed at once (the parent times its arrival);
    ``extra`` numbers (update counts, learner seconds) ride along to the parent."""
    print(json.dumps({"steps": int(steps), "eval": float(ret), **extra}), flush=True)


def measure(script: str, impl: str, seed: int, budget: int, eval_every: int,
            threshold: float = THRESHOLD) -> dict[str, Any]:
    """Run ``script --child impl`` and time it to the first evaluation >= ``threshold``.

    Returns ``{"wall_s", "steps", "evals"}`` and the solving report's ``extra`` fields
    (``wall_s`` nan and ``steps`` None if the budget ran out first, then ``budget_wall_s``
    is the time the child took to spend its whole budget, and the extra fields are the
    last report's; ``evals`` lists every evaluation's rounded return).
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, "--child", impl, "--seed", str(seed),
                             "--budget", str(budget), "--eval-every", str(eval_every)],
                            stdout=subprocess.PIPE, text=True)
    solved = None
    last: dict[str, Any] = {}
    evals: list[int] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        rec = json.loads(line)
        last = rec
        evals.append(round(rec["eval"]))
        if rec["eval"] >= threshold:
            solved = {**rec, "wall_s": time.perf_counter() - start}
            solved.pop("eval")
            break
    proc.kill()
    proc.wait()
    extra = {k: v for k, v in last.items() if k not in ("steps", "eval")}
    out: dict[str, Any] = solved or {**extra, "wall_s": float("nan"), "steps": None,
                                     "budget_wall_s": time.perf_counter() - start}
    out["evals"] = evals
    return out


def rl_train_until_solved(algo: Any, budget: int, eval_every: int) -> None:
    """Child side for rl: train, with 10 greedy episodes every ``eval_every`` env steps,
    until an evaluation reaches ``THRESHOLD`` or ``budget`` steps are spent; stops ``algo``."""
    algo.stop_timesteps = budget
    next_eval = eval_every
    try:
        while algo.env_steps_total < budget:
            algo.train()
            if algo.env_steps_total >= next_eval:
                next_eval += eval_every
                ret = algo.evaluate(10)["eval/episode_return_mean"]
                report(algo.env_steps_total, ret)
                if ret >= THRESHOLD:
                    break
    finally:
        algo.stop()


def sb3_eval_callback(eval_env: Any, eval_every: int,
                      on_eval: Callable[[int, float], None] = report):
    """An SB3 callback: 10 greedy episodes every ``eval_every`` steps; stops when solved."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class Eval(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next_eval = eval_every

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            ret, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=10, deterministic=True)
            on_eval(self.num_timesteps, float(ret))
            return ret < THRESHOLD

    return Eval()


def sb3_time_updates(model: Any) -> dict[str, float]:
    """Wrap an SB3 off-policy model's ``train`` so the returned dict counts its gradient
    updates (``updates``) and the seconds spent in them (``learn_s``)."""
    timed = {"learn_s": 0.0, "updates": 0}
    train = model.train

    def timed_train(gradient_steps: int, batch_size: int) -> None:
        start = time.perf_counter()
        train(gradient_steps=gradient_steps, batch_size=batch_size)
        timed["learn_s"] += time.perf_counter() - start
        timed["updates"] += gradient_steps

    model.train = timed_train
    return timed
