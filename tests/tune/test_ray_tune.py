"""rl tune --backend ray: small sweeps of tuned_examples/ppo/cartpole_tune.yaml on a local
Ray that each ``rl tune`` process starts and shuts down (its temp dir our own, so a
process it left behind would be found): ASHA with a crashing trial, the outputs and
best.yaml; PBT exploiting through rl checkpoints; the flag checks."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

from rl import cli
from rl.experiment import load_example
from tests.tune.test_tune import EXAMPLE, rows, small_example

RAISING = "tests.toy_envs:RaisingResetEnv"


@pytest.fixture
def ray_tmp():
    """A short RAY_TMPDIR of the test's own (Ray's socket paths must stay short); after
    the test no process may still run from it."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        yield path
        ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True)
        left = [line for line in ps.stdout.splitlines() if path in line]
        assert not left, f"Ray processes left behind: {left}"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_ray_cli(ray_tmp, *argv, timeout=240):
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "rl.cli", "tune", *argv, "--backend", "ray"],
                          capture_output=True, text=True, timeout=timeout, env=env)


def with_space(path, space, **stop) -> str:
    file = small_example(path)
    with open(file) as f:
        data = yaml.safe_load(f)
    data["tune"]["space"].update(space)
    data["stop"].update(stop)
    with open(file, "w") as f:
        yaml.safe_dump(data, f)
    return file


def test_an_asha_sweep_on_ray_records_every_trial_and_writes_best_yaml(tmp_path, ray_tmp):
    file = with_space(tmp_path / "t.yaml", {"env": {"choice": ["CartPole-v1", RAISING]}})
    out = str(tmp_path / "out")
    done = run_ray_cli(ray_tmp, file, "--trials", "4", "--parallel", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert len(got) == 4 and [r["number"] for r in got] == ["0", "1", "2", "3"]
    assert {r["state"] for r in got} <= {"complete", "pruned", "failed"}
    failed = [r for r in got if r["state"] == "failed"]
    assert failed and all(r["env"] == RAISING and "no scenario loaded" in r["error"]
                          for r in failed)
    others = [r for r in got if r["env"] == "CartPole-v1"]
    assert others and all(r["state"] in ("complete", "pruned") and float(r["final"]) > 0
                          for r in others)
    assert all(os.path.isdir(r["dir"]) for r in got)
    assert os.path.isdir(os.path.join(out, "ray"))
    for name in ("best.yaml", "history.png", "curves.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    best = load_example(os.path.join(out, "best.yaml"))
    winner = max((r for r in got if r["state"] == "complete"), key=lambda r: float(r["final"]))
    assert best.config.lr == pytest.approx(float(winner["lr"]))
    assert best.config.num_epochs == int(winner["num_epochs"]) and best.tune is None

    again = run_ray_cli(ray_tmp, file, "--trials", "4", "--out", out)
    assert again.returncode == 2 and "--resume" in again.stderr  # DIR/ray is kept


def test_pbt_on_ray_exploits_through_rl_checkpoints(tmp_path, ray_tmp):
    # 16 iterations of 256 steps: PBT perturbs every 4 (rl.tune.ray_study.PBT_ROUNDS).
    file = with_space(tmp_path / "t.yaml", {}, env_steps_total=4096)
    out = str(tmp_path / "out")
    done = run_ray_cli(ray_tmp, file, "--trials", "2", "--parallel", "2", "--pruner", "pbt",
                       "--out", out)
    assert done.returncode == 0, done.stderr
    got = rows(out)
    assert [r["state"] for r in got] == ["complete", "complete"]
    restored = []
    for root, _, names in os.walk(os.path.join(out, "ray")):
        if "result.json" in names:
            with open(os.path.join(root, "result.json")) as f:
                restored += [json.loads(line).get("restored_from") for line in f]
    ids = {os.path.basename(r["dir"]).removeprefix("trial_") for r in got}
    assert {r for r in restored if r} & ids, "no trial restored from another's checkpoint"


def test_pbt_and_address_need_the_ray_backend(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["tune", EXAMPLE, "--pruner", "pbt", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--pruner pbt needs --backend ray" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["tune", EXAMPLE, "--address", "auto", "--out", str(out)]) == 2
    assert "--address" in capsys.readouterr().err and not out.exists()


def test_resume_on_ray_without_an_experiment_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["tune", small_example(tmp_path / "t.yaml"), "--backend", "ray",
                     "--resume", "--out", str(out)]) == 2
    assert "no Ray Tune experiment at" in capsys.readouterr().err


def test_resume_on_ray_runs_until_trials_exist(tmp_path, ray_tmp):
    file = small_example(tmp_path / "t.yaml", stop={"env_steps_total": 256})
    out = str(tmp_path / "out")
    done = run_ray_cli(ray_tmp, file, "--trials", "1", "--pruner", "none", "--out", out)
    assert done.returncode == 0, done.stderr
    first = rows(out)
    assert [r["state"] for r in first] == ["complete"]
    more = run_ray_cli(ray_tmp, file, "--trials", "3", "--pruner", "none", "--out", out,
                       "--resume")
    assert more.returncode == 0, more.stderr
    got = rows(out)
    assert [r["state"] for r in got] == ["complete"] * 3
    assert got[0]["dir"] == first[0]["dir"]  # the finished trial is kept, not run again
    assert sum("/3] trial" in line for line in more.stderr.splitlines()) == 2, more.stderr


@pytest.mark.parametrize("trials, refused", [(3, True), (2, False), (None, False)])
def test_resume_keeps_a_pbt_population_its_size(trials, refused):
    from types import SimpleNamespace

    from rl.config import ConfigError
    from rl.tune.ray_study import _resume_to
    from rl.tune.study import TuneOptions

    # a restored PBT experiment: no searcher, a population of 2 (Ray's variant generator)
    internal = SimpleNamespace(_run_config=SimpleNamespace(callbacks=["pickled"]),
                               _tune_config=SimpleNamespace(search_alg=None, num_samples=2))
    options = TuneOptions(out="unused", trials=trials, pruner="pbt", resume=True)
    if refused:
        with pytest.raises(ConfigError, match="population is 2 trials"):
            _resume_to(SimpleNamespace(_local_tuner=internal), 3, options, "live")
    else:
        _resume_to(SimpleNamespace(_local_tuner=internal), 2, options, "live")
        assert internal._tune_config.search_alg is None
        assert internal._run_config.callbacks == ["live"]
