"""Startup: wall time of ``rl train --algo ppo --env CartPole --stop-iters 1
--num-env-runners 2`` (issue 3's target: <= 3 s), against Stable-Baselines3 doing the
same work in the same run, and against the floors every torch program pays.

Each round runs, in a fresh process each and in this order (so machine load hits all
alike):

- **rl**: the CLI command above, to its exit: imports, config, 2 worker processes,
  one PPO iteration (1,024 steps, 10 epochs of 128-sample minibatches), the final
  greedy evaluation, the run directory and the checkpoint;
- **sb3**: the same work with SB3: ``SubprocVecEnv`` of 2 CartPole envs (forkserver),
  PPO with ``n_steps=512`` (1,024 steps), ``batch_size=128``, ``n_epochs=10``, one
  ``learn`` iteration, a 10-episode greedy evaluation and ``save``;
- **floor: import torch**: ``python -c "import torch"``;
- **floor: torch + optimizer**: ``import torch`` and one ``torch.optim.Adam``, whose
  first construction imports ``torch._dynamo`` (about as long as torch itself): any
  program that trains with a torch optimizer pays both.

Medians over the rounds; ratios are rl / peer (below 1: faster). For **rl** it also
reports the **time to first sample** (issue 20's target: <= 1 s): from launching the
command to the first rollout worker finishing its first fragment (``RL_STARTUP_TRACE``,
see ``rl.rollout.worker``); the driver collects it once its learner is built.

Run: ``.venv/bin/python benchmarks/startup.py [--rounds 5]`` (SB3: ``pip install
'rl[bench]'``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent

SB3_SCRIPT = """
import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import SubprocVecEnv

if __name__ == "__main__":
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv,
                       vec_env_kwargs={"start_method": "forkserver"})
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=10, seed=0,
                device="cpu")
    model.learn(1024)
    evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10, deterministic=True)
    model.save(r"{out}/sb3_model")
    env.close()
"""

FLOOR_OPTIMIZER = "import torch; torch.optim.Adam(torch.nn.Linear(4, 2).parameters())"


def commands(out: str) -> dict[str, list[str]]:
    return {
        "rl": [str(BIN / "rl"), "train", "--algo", "ppo", "--env", "CartPole", "--stop-iters",
               "1", "--num-env-runners", "2", "--logdir", out],
        "sb3": [sys.executable, "-c", SB3_SCRIPT.replace("{out}", out)],
        "floor: import torch": [sys.executable, "-c", "import torch"],
        "floor: torch + optimizer": [sys.executable, "-c", FLOOR_OPTIMIZER],
    }


def timed(cmd: list[str], trace: str) -> tuple[float, float | None]:
    """Wall time of ``cmd`` and, if it wrote ``trace``, the time to its first fragment."""
    if os.path.exists(trace):
        os.unlink(trace)
    wall_start, start = time.time(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                     "RL_STARTUP_TRACE": trace})
    elapsed = time.perf_counter() - start
    first = None
    if os.path.exists(trace):
        with open(trace) as f:
            first = float(f.read()) - wall_start
    return elapsed, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import stable_baselines3  # noqa: F401
        have_sb3 = True
    except ImportError:
        have_sb3 = False
        print("stable-baselines3 is not installed: no peer (pip install 'rl[bench]')")
    times: dict[str, list[float]] = {}
    first_sample: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        cmds = commands(out)
        trace = os.path.join(out, "first_sample")
        if not have_sb3:
            del cmds["sb3"]
        timed(cmds["floor: import torch"], trace)  # warm the page cache before round 1
        for r in range(args.rounds):
            for name, cmd in cmds.items():
                elapsed, first = timed(cmd, trace)
                times.setdefault(name, []).append(elapsed)
                if name == "rl" and first is not None:
                    first_sample.append(first)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    load = os.getloadavg()[0]
    print(f"\nmedians over {args.rounds} rounds (load average at the end: {load:.1f})")
    ours = statistics.median(times["rl"])
    for name, values in times.items():
        med = statistics.median(values)
        ratio = "" if name == "rl" else f"   rl / this = {ours / med:.2f}"
        print(f"  {name:26s} {med:6.2f} s  (min {min(values):.2f}){ratio}")
        if name == "rl" and first_sample:
            print(f"  {'rl: time to first sample':26s} {statistics.median(first_sample):6.2f} s"
                  f"  (min {min(first_sample):.2f}; target <= 1 s)")
    print(f"\ntarget <= 3 s: {'met' if ours <= 3.0 else 'NOT met'} ({ours:.2f} s)")
    if "sb3" in times:
        ratio = ours / statistics.median(times["sb3"])
        print(f"target rl / sb3 <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'} ({ratio:.2f})")
    if first_sample:
        first = statistics.median(first_sample)
        print(f"target first sample <= 1 s: {'met' if first <= 1.0 else 'NOT met'} "
              f"({first:.2f} s)")


if __name__ == "__main__":
    main()
