"""One trial, in its own process: ``python -m rl.tune.trial SPEC.json``.

The sweep (``rl.tune.study``) starts one such process per trial, in a session of its
own, so that a trial's worker processes stay inside it and a signal to the trial reaches
them all. The spec names the tuned example, the sampled ``params``, the ``seeds`` and
the trial's directory. The trial builds one algorithm per seed and trains them in
lockstep, one iteration each per round, each under the example's stop criteria; after
every round it writes one JSON line to its stdout::

    {"step": 4096, "value": 123.4}          # the metric, mean over the seeds
    {"final": 301.2, "best": 320.0, "run_dirs": [...]}   # at the end
    {"error": "ValueError: ..."}            # a crash (then exit 1)

``step`` is the fewest env steps any seed has taken (``env_steps_total``); a seed that
stopped holds its last value in the mean. Everything else the trial prints goes to
stderr (the sweep keeps it in ``trial.log``). SIGTERM or SIGINT ends the trial between
iterations (``rl.interrupts``), its algorithms stopped and their workers gone; so does
the death of the sweep process (a pidfd on it), which SIGTERMs the trial.

``env_steps_to_pass``: a seed's value is the env steps at which it met the example's
pass criterion (a greedy-evaluation criterion is checked once, after its run); while it
has not, its intermediate value is the steps it has taken so far (a lower bound), and a
seed that never passes counts as twice the steps it ran.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import sys
import threading
from typing import Any

from rl.config import error_line
from rl.interrupts import INTERRUPTS, Terminated

EXIT_STOPPED = 143


class _Seed:
    """One seed's algorithm and where its metric stands."""

    def __init__(self, example, params: dict[str, Any], seed: int, trial_dir: str):
        cfg = example.config.copy().set(**params).set(seed=seed)
        self.algo = cfg.build()
        self.algo.attach_logger(trial_dir, console=None)
        self.stop = example.stop
        if self.stop.env_steps_total:
            self.algo.stop_timesteps = int(self.stop.env_steps_total)
        self.result: dict[str, Any] = {}
        self.value = math.nan
        self.passed_at: int | None = None
        self.done = False


def _value(metric: str, result: dict[str, Any]) -> float:
    value = result.get(metric)
    return float(value) if isinstance(value, int | float) else math.nan


def run_trial(spec: dict[str, Any], emit, restore=None, save=None) -> dict[str, Any]:
    """Train every seed of the trial; ``emit(dict)`` each round's intermediate value.

    ``restore(algos)``: called once the seeds' algorithms are built (PBT: load the
    checkpoint the trial was handed); ``save(algos)``: after every round, before its
    ``emit`` (PBT: the checkpoint that goes with the report). The Ray trainable
    (``rl.tune.ray_study``) passes them; the trial process does not."""
    from rl.bench import pass_criterion
    from rl.experiment import load_example
    from rl.tune.space import ENV_STEPS_TO_PASS

    example = load_example(spec["example"])
    metric, mode = spec["metric"], spec["mode"]
    to_pass = metric == ENV_STEPS_TO_PASS
    criterion = pass_criterion(example) if to_pass else None
    seeds: list[_Seed] = []
    best = math.nan
    try:
        for seed in spec["seeds"]:
            seeds.append(_Seed(example, spec["params"], seed, spec["dir"]))
        if restore is not None:
            restore([s.algo for s in seeds])
        while not all(s.done for s in seeds):
            for s in seeds:
                if s.done:
                    continue
                s.result = s.algo.train()
                steps = int(s.result.get("env_steps_total", 0))
                if to_pass:
                    if s.passed_at is None and criterion.episodes is None \
                            and criterion.met(s.result):
                        s.passed_at = steps
                    s.value = float(s.passed_at if s.passed_at is not None else steps)
                else:
                    s.value = _value(metric, s.result)
                s.done = s.stop.reached(s.result) is not None or s.passed_at is not None
                INTERRUPTS.check()
            values = [s.value for s in seeds if not math.isnan(s.value)]
            if len(values) == len(seeds):
                mean = sum(values) / len(values)
                best = mean if math.isnan(best) or (mean > best if mode == "max"
                                                    else mean < best) else best
                if save is not None:
                    save([s.algo for s in seeds])
                emit({"step": min(int(s.result.get("env_steps_total", 0)) for s in seeds),
                      "value": mean})
        finals = [_final(s, metric, to_pass, criterion) for s in seeds]
        final = sum(finals) / len(finals)
        if math.isnan(final):
            keys = ", ".join(sorted(k for k in seeds[0].result if "/" not in k))
            raise KeyError(f"the metric {metric!r} is not in the results; result keys: {keys}")
        if to_pass or math.isnan(best):
            best = final
        for s in seeds:
            s.algo.save()
        return {"final": final, "best": best, "run_dirs": [s.algo.run_dir for s in seeds]}
    finally:
        for s in seeds:
            s.algo.stop()


def _final(s: _Seed, metric: str, to_pass: bool, criterion) -> float:
    if to_pass:
        if s.passed_at is None and criterion.episodes is not None:
            if criterion.met(criterion.measure(s.algo, s.result)):
                s.passed_at = int(s.result.get("env_steps_total", 0))
        return float(s.passed_at if s.passed_at is not None
                     else 2 * int(s.result.get("env_steps_total", 0)))
    if metric.startswith("eval/") and math.isnan(_value(metric, s.result)):
        s.result.update(s.algo.evaluate())
    return _value(metric, s.result)


def _watch_sweep() -> None:
    """SIGTERM ourselves when the sweep process dies (killed, where it could not stop
    us): the trial is in a session of its own, so nothing else would end it."""
    try:
        fd = os.pidfd_open(os.getppid())
    except (AttributeError, OSError):  # no pidfd (not Linux): the sweep's Ctrl-C path only
        return

    def wait() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="watch-sweep", daemon=True).start()


def main(argv: list[str]) -> int:
    # The protocol's lines go to the original stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    cwd = os.getcwd()
    if cwd not in sys.path:  # module:Class names from the sweep's directory, as `rl train`
        sys.path.insert(0, cwd)
    with open(argv[0]) as f:
        spec = json.load(f)

    def emit(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")

    with INTERRUPTS.installed():
        _watch_sweep()
        try:
            emit(run_trial(spec, emit))
        except (KeyboardInterrupt, Terminated):
            return EXIT_STOPPED
        except Exception as e:
            emit({"error": error_line(e, limit=400)})
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
