"""rl tune: the search space's checks, the study's pruning / failure / interrupt / resume
wiring (stub trial processes with scripted values), and real sweeps of
tuned_examples/ppo/cartpole_tune.yaml at a small budget (the CLI end to end, best.yaml
trains, a crashing trial, Ctrl-C)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from rl import cli
from rl.experiment import load_example
from rl.tune import study as study_module
from rl.tune.study import INTERRUPTED, TuneOptions, run_study
from tests.conftest import pid_alive, wait_gone

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples", "ppo",
                       "cartpole_tune.yaml")


def small_example(path, **changes) -> str:
    """cartpole_tune.yaml at a CI budget: one in-process env runner, 1,024 env steps."""
    with open(EXAMPLE) as f:
        data = yaml.safe_load(f)
    data["config"].update(backend="inline", num_env_runners=0, num_envs_per_env_runner=4,
                          train_batch_size=256, minibatch_size=64)
    data["stop"] = {"env_steps_total": 1024}
    data["tune"]["space"]["num_epochs"] = {"int": [1, 2]}
    for key, value in changes.items():  # None: leave the key out
        data[key] = value
        if value is None:
            del data[key]
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def rows(out) -> list[dict]:
    with open(os.path.join(out, "trials.csv")) as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- bad spaces
@pytest.mark.parametrize("space,message", [
    ({"lrr": {"uniform": [0.1, 0.2]}}, "unknown ppo config key 'lrr'"),
    ({"num_epochs": {"choice": ["many", 4]}}, "num_epochs"),
    ({"lr": {"uniform": [0.01, 0.001]}}, "empty range"),
    ({"lr": {"loguniform": [0.0, 0.01]}}, "loguniform bounds must be > 0"),
    ({"lr": {"normal": [0.0, 0.01]}}, "unknown distribution 'normal'"),
    ({"gamma": {"uniform": [0.9, 1.5]}}, "gamma must be <= 1"),
    ({"lr_schedule": {"uniform": [0.1, 0.2]}}, "lr_schedule"),
])
def test_a_bad_space_exits_2_with_one_line_before_anything_starts(tmp_path, capsys, space,
                                                                   message):
    file = small_example(tmp_path / "bad.yaml", tune={"metric": "episode_return_mean",
                                                      "space": space})
    out = tmp_path / "out"
    assert cli.main(["tune", file, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("rl tune: error:")
    assert not out.exists()


def test_grid_sampler_refuses_a_continuous_range(tmp_path, capsys):
    assert cli.main(["tune", small_example(tmp_path / "t.yaml"), "--sampler", "grid",
                     "--out", str(tmp_path / "out")]) == 2
    assert "lr is a continuous loguniform range" in capsys.readouterr().err


def test_parallel_is_clamped_to_the_cores():
    parallel, note = cli.cli_tune.clamp_parallel(4, 3, 8)
    assert parallel == 2 and "needs 12 cores" in note and "running 2 at a time" in note
    assert cli.cli_tune.clamp_parallel(2, 1, 8) == (2, None)
    assert cli.cli_tune.clamp_parallel(3, 5, 2)[0] == 1


# ---------------------------------------------------------------------------- stub trials
STUB = r"""
import json, sys, time
spec = json.load(open(sys.argv[1]))
n = spec["number"]
good = n < 3                   # the first three trials do well (the third crashes), the rest badly
for step in range(1, 6):
    print(json.dumps({"step": step * 100, "value": 1.0 if good else 0.0}), flush=True)
    time.sleep(0.05 if good else 0.5)
    if n == 2 and step == 2:
        print(json.dumps({"error": "RuntimeError: stub crash"}), flush=True)
        sys.exit(1)
print(json.dumps({"final": 1.0 if good else 0.0, "best": 1.0, "run_dirs": []}), flush=True)
"""


def stub_launch(spec, spec_path, log):
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    return subprocess.Popen([sys.executable, "-c", STUB, spec_path], stdout=subprocess.PIPE,
                            stderr=log, start_new_session=True)


def stub_example(tmp_path):
    return load_example(small_example(tmp_path / "stub.yaml"))


def test_the_pruner_stops_a_bad_trial_and_a_crash_is_recorded_failed(tmp_path):
    example = stub_example(tmp_path)
    options = TuneOptions(out=str(tmp_path / "out"), trials=5, parallel=1, pruner="median",
                          sampler="random")
    study = run_study(example, options, console=None, launch=stub_launch)
    states = [t.state for t in study.trials]
    S = optuna.trial.TrialState
    assert states[:2] == [S.COMPLETE, S.COMPLETE]
    assert states[2] == S.FAIL and study.trials[2].user_attrs["error"] == \
        "RuntimeError: stub crash"
    # Trials 3 and 4 report 0 where the two finished ones reported 1: the median pruner
    # stops them at their first report.
    assert states[3:] == [S.PRUNED, S.PRUNED]
    assert all(max(t.intermediate_values) == 100 for t in study.trials[3:])


class _InterruptAfter:
    """A console that raises KeyboardInterrupt at its n-th line (Ctrl-C mid-sweep)."""

    def __init__(self, n):
        self.n = n

    def write(self, text):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt

    def flush(self):
        pass


def test_an_interrupted_sweep_resumes_with_only_the_missing_trials(tmp_path):
    example = stub_example(tmp_path)
    out = str(tmp_path / "out")
    options = TuneOptions(out=out, trials=6, parallel=2, pruner="none", sampler="random")
    with pytest.raises(KeyboardInterrupt):
        run_study(example, options, console=_InterruptAfter(1), launch=stub_launch)
    study = optuna.load_study(study_name="rl-tune", storage=f"sqlite:///{out}/study.db")
    first = {t.number: (t.state, t.params) for t in study.trials}
    interrupted = [t for t in study.trials if t.user_attrs.get("error") == INTERRUPTED]
    assert interrupted and all(t.state == optuna.trial.TrialState.FAIL for t in interrupted)
    finished = len(first) - len(interrupted)
    options.resume = True
    study = run_study(example, options, console=None, launch=stub_launch)
    # What was finished is kept as it was; the interrupted trial is run again as a new one.
    assert {t.number: (t.state, t.params) for t in study.trials[:len(first)]} == first
    assert len(study.trials) == len(first) + (6 - finished)


def test_a_trial_a_killed_sweep_left_running_is_marked_failed_and_run_again(tmp_path):
    example = stub_example(tmp_path)
    options = TuneOptions(out=str(tmp_path / "out"), trials=2, pruner="none", sampler="random")
    run_study(example, options, console=None, launch=stub_launch)
    study = optuna.load_study(study_name="rl-tune",
                              storage=f"sqlite:///{tmp_path}/out/study.db")
    study.ask()  # as if the sweep had been killed with this trial running
    options.resume, options.trials = True, 3
    study = run_study(example, options, console=None, launch=stub_launch)
    S = optuna.trial.TrialState
    assert [t.state for t in study.trials] == [S.COMPLETE, S.COMPLETE, S.FAIL, S.COMPLETE]
    assert study.trials[2].user_attrs["error"] == INTERRUPTED


# A stub trial: the "driver" of a segment and of a worker in its session. The worker
# writes a file if it ever gets SIGTERM (the sweep must leave it to the trial). The
# trial stops on SIGTERM (kills its worker and exits 143, its segment still named, as
# after a SIGKILL mid-shutdown), or, stuck, ignores it.
WORKER_STUB = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], "w").close())
time.sleep(600)
"""
DRIVER_STUB = """
import os, signal, subprocess, sys, time
stuck, flag, worker_code = sys.argv[1] == "stuck", sys.argv[2], sys.argv[3]
open(f"/dev/shm/rl_{os.getpid()}_0_{os.getpid()}_0", "w").close()
worker = subprocess.Popen([sys.executable, "-c", worker_code, flag], stdout=subprocess.DEVNULL)
def stop(*_):
    worker.kill()
    worker.wait()
    sys.exit(143)
signal.signal(signal.SIGTERM, signal.SIG_IGN if stuck else stop)
print(worker.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("stuck", [False, True], ids=["stops", "stuck"])
def test_a_stopped_trial_leaves_no_process_and_no_segment(tmp_path, monkeypatch, stuck):
    """Ctrl-C: SIGTERM reaches the trial alone (its workers are its to stop); a trial
    that outlives the grace period is SIGKILLed with its session; either way the
    segments named by its driver prefix are removed."""
    monkeypatch.setattr(study_module, "GRACE_S", 1.0)
    flag = tmp_path / "worker_got_sigterm"
    study = optuna.create_study()
    trial = study.ask()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER_STUB, "stuck" if stuck else "stops",
                             str(flag), WORKER_STUB], stdout=subprocess.PIPE,
                            start_new_session=True)
    worker = int(proc.stdout.readline())
    assert os.path.exists(f"/dev/shm/rl_{proc.pid}_0_{proc.pid}_0")
    study_module._stop_all([study_module._Running(trial, proc, str(tmp_path), time.time())],
                           study, optuna)
    proc.stdout.close()
    assert proc.returncode == (-signal.SIGKILL if stuck else 143)
    assert wait_gone([worker], 10) == []
    assert not flag.exists(), "the sweep signalled the trial's worker"
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"rl_{proc.pid}_")] == []
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert study.trials[0].user_attrs["error"] == INTERRUPTED


FINISHING_STUB = """
import json, os, subprocess, sys
open(f"/dev/shm/rl_{os.getpid()}_0_{os.getpid()}_7", "w").close()
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                          stdout=subprocess.DEVNULL)  # the protocol pipe stays the trial's
with open(sys.argv[1] + ".pid", "w") as f:
    f.write(f"{os.getpid()} {worker.pid}")
print(json.dumps({"final": 1.0, "best": 1.0, "run_dirs": []}), flush=True)
"""


def test_a_finished_trial_leaves_no_stray_worker_and_no_segment(tmp_path):
    """A trial that exits while a worker of its session still runs and a segment of its
    is still named: the sweep kills the worker and removes the segment."""

    def launch(spec, spec_path, log):
        return subprocess.Popen([sys.executable, "-c", FINISHING_STUB, spec_path],
                                stdout=subprocess.PIPE, stderr=log, start_new_session=True)

    options = TuneOptions(out=str(tmp_path / "out"), trials=1, pruner="none", sampler="random")
    study = run_study(stub_example(tmp_path), options, console=None, launch=launch)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    with open(tmp_path / "out" / "trial_0000" / "spec.json.pid") as f:
        trial_pid, worker = map(int, f.read().split())
    assert wait_gone([worker], 10) == []
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"rl_{trial_pid}_")] == []


def test_each_trial_process_gets_thread_pools_the_width_of_its_cores(tmp_path, monkeypatch):
    """P trials side by side must not each size torch's pool to the whole machine."""
    env = study_module.trial_environment(1, {"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "x"})
    assert all(env[v] == "1" for v in study_module.THREAD_VARIABLES)
    assert study_module.trial_environment(4, {"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2"
    code = "import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=study_module.trial_environment(1))
    assert out.stdout.strip() == "1"
    seen = []

    def launch(spec, spec_path, log):  # the real launcher, recording its environment
        real = subprocess.Popen

        def popen(*args, **kwargs):
            seen.append((spec["threads"], kwargs["env"]["OMP_NUM_THREADS"]))
            return real([sys.executable, "-c", STUB, spec_path], stdout=subprocess.PIPE,
                        stderr=log, start_new_session=True)
        monkeypatch.setattr(study_module.subprocess, "Popen", popen)
        try:
            return study_module.launch_trial(spec, spec_path, log)
        finally:
            monkeypatch.setattr(study_module.subprocess, "Popen", real)

    options = TuneOptions(out=str(tmp_path / "out"), trials=2, parallel=2, pruner="none",
                          sampler="random", seeds=[0, 1])
    run_study(stub_example(tmp_path), options, console=None, launch=launch)
    assert seen == [(2, "2"), (2, "2")]


def test_a_sweep_dir_is_not_overwritten_without_resume(tmp_path, capsys):
    file = small_example(tmp_path / "t.yaml")
    os.makedirs(tmp_path / "out")
    (tmp_path / "out" / "study.db").write_text("")
    assert cli.main(["tune", file, "--out", str(tmp_path / "out")]) == 2
    assert "pass --resume" in capsys.readouterr().err


# ---------------------------------------------------------------------------- real sweeps
def run_cli(*argv, timeout=240):
    return subprocess.run([sys.executable, "-m", "rl.cli", *argv], capture_output=True,
                          text=True, timeout=timeout)


def test_a_small_sweep_writes_its_outputs_resumes_and_best_yaml_trains(tmp_path):
    file = small_example(tmp_path / "t.yaml")
    out = str(tmp_path / "out")
    done = run_cli("tune", file, "--trials", "2", "--parallel", "2", "--out", out,
                   "--pruner", "median")
    assert done.returncode == 0, done.stderr
    assert sum(" complete " in line for line in done.stderr.splitlines()) == 2
    first = rows(out)
    assert [r["state"] for r in first] == ["complete", "complete"]
    assert all(float(r["final"]) > 0 and r["lr"] and r["clip_param"] and r["num_epochs"]
               for r in first)
    for name in ("study.db", "best.yaml", "history.png", "importances.png", "curves.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert all(os.path.isdir(os.path.join(out, f"trial_000{i}")) for i in (0, 1))
    best = load_example(os.path.join(out, "best.yaml"))
    winner = max(first, key=lambda r: float(r["final"]))
    assert best.config.lr == pytest.approx(float(winner["lr"]))
    assert best.config.num_epochs == int(winner["num_epochs"]) and best.tune is None

    again = run_cli("tune", file, "--trials", "3", "--out", out, "--resume")
    assert again.returncode == 0, again.stderr
    assert "2 of 3 trials done" in again.stderr
    now = rows(out)
    assert len(now) == 3 and now[:2] == first  # only the missing trial ran

    trained = run_cli("train", "-f", os.path.join(out, "best.yaml"), "--stop-timesteps", "512",
                      "--logdir", str(tmp_path / "runs"), "--no-eval", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout.splitlines()[-1])["env_steps_total"] >= 512


def test_a_crashing_trial_is_recorded_failed_and_the_sweep_goes_on(tmp_path):
    file = small_example(tmp_path / "t.yaml")
    with open(file) as f:
        data = yaml.safe_load(f)
    data["tune"]["space"] = {"env": {"choice": ["tests.toy_envs:RaisingResetEnv"]}}
    with open(file, "w") as f:
        yaml.safe_dump(data, f)
    out = str(tmp_path / "out")
    done = run_cli("tune", file, "--trials", "2", "--parallel", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert [r["state"] for r in got] == ["failed", "failed"]
    assert all("no scenario loaded" in r["error"] for r in got)
    assert "no trial completed" in done.stderr


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,sid="], capture_output=True, text=True)
    table = [tuple(map(int, line.split())) for line in out.stdout.splitlines()]
    kids = [p for p, pp, _ in table if pp == pid]
    return kids + [g for k in kids for g in _descendants(k)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl_c", "killed"])
def test_ctrl_c_stops_every_trial_keeps_the_study_and_exits_130(tmp_path, sig):
    """Ctrl-C: exit 130, the trials stopped and recorded; a killed sweep (no chance to
    stop anything): its trials notice and end themselves."""
    file = small_example(tmp_path / "t.yaml")
    with open(file) as f:
        data = yaml.safe_load(f)
    data["stop"] = {"env_steps_total": 10_000_000}
    data["config"].update(backend="process", num_env_runners=1)
    with open(file, "w") as f:
        yaml.safe_dump(data, f)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rl.cli", "tune", file, "--trials", "4",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("trial_0000/*/result.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(out.glob("trial_0000/*/result.jsonl")), "the trial never started training"
    kids = _descendants(proc.pid)
    assert len(kids) >= 2  # the trial process and its env runner
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert wait_gone(kids, 30) == [] and not any(pid_alive(k) for k in kids)
    # The trial processes were the drivers of their runtimes: no segment of theirs is left.
    assert [n for n in os.listdir("/dev/shm") if any(n.startswith(f"rl_{k}_") for k in kids)] == []
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL and os.path.getsize(out / "study.db") > 0
        return
    assert proc.returncode == 130, err
    assert "--resume continues it" in err
    got = rows(out)
    assert [r["state"] for r in got] == ["failed"] and got[0]["error"] == INTERRUPTED
    assert os.path.getsize(out / "study.db") > 0


def test_a_trial_with_two_seeds_reports_their_mean_at_each_step(tmp_path):
    from rl.tune.trial import run_trial

    file = small_example(tmp_path / "t.yaml")
    reports = []
    out = run_trial({"example": file, "params": {"lr": 1e-3, "num_epochs": 1}, "seeds": [0, 1],
                     "metric": "episode_return_mean", "mode": "max",
                     "dir": str(tmp_path / "trial")}, reports.append)
    assert len(out["run_dirs"]) == 2
    curves = []
    for run_dir in out["run_dirs"]:
        with open(os.path.join(run_dir, "result.jsonl")) as f:
            curves.append({r["env_steps_total"]: r["episode_return_mean"]
                           for r in map(json.loads, f) if "episode_return_mean" in r})
        with open(os.path.join(run_dir, "params.json")) as f:
            assert json.load(f)["num_epochs"] == 1
    assert [r["step"] for r in reports] == sorted(set(curves[0]) & set(curves[1]))
    for r in reports:
        assert r["value"] == pytest.approx((curves[0][r["step"]] + curves[1][r["step"]]) / 2)
    assert out["final"] == pytest.approx(reports[-1]["value"])
    assert out["best"] == pytest.approx(max(r["value"] for r in reports))


def test_without_optuna_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert cli.main(["tune", small_example(tmp_path / "t.yaml"),
                     "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'rl[tune]'" in capsys.readouterr().err


def test_env_steps_to_pass_counts_the_steps_to_the_pass_criterion(tmp_path):
    from rl.tune.trial import run_trial

    file = small_example(tmp_path / "t.yaml", reference=None,
                         **{"pass": {"metric": "episode_return_mean", "min": 15}})
    reports = []
    out = run_trial({"example": file, "params": {}, "seeds": [0], "dir": str(tmp_path / "t"),
                     "metric": "env_steps_to_pass", "mode": "min"}, reports.append)
    with open(os.path.join(out["run_dirs"][0], "result.jsonl")) as f:
        results = [r for r in map(json.loads, f) if "episode_return_mean" in r]
    passed = next(r["env_steps_total"] for r in results if r["episode_return_mean"] >= 15)
    assert out["final"] == passed and results[-1]["env_steps_total"] == passed
    assert [r["value"] for r in reports] == [r["step"] for r in reports]  # steps so far
