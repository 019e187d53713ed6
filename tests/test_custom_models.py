"""Users' own torch models through every path: build-time checks, the CLI, learner
processes (DDP), observation normalisation, checkpoints in a new process, the Ray
backend, and learning CartPole with PPO and DQN (the learning tests, in CI)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

from rl import Algorithm, ConfigError, DQNConfig, PPOConfig
from rl.checkpoint import CheckpointError
from rl.cli import main
from rl.experiment import fit, load_example
from tests.conftest import require_ray
from tests.custom_models import TorchActorCritic, TorchQNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tests.custom_models"


def small_ppo(**overrides) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .training(train_batch_size=64, minibatch_size=32, num_epochs=1)
            .resources(backend="process").debugging(seed=0).set(**overrides))


def test_a_broken_model_fails_the_build_before_any_process_starts():
    before = set(multiprocessing.active_children())
    config = small_ppo(model_class=f"{PACKAGE}:BrokenValueShape")
    with pytest.raises(ConfigError, match=r"model_class 'tests.custom_models:BrokenValueShape': "
                                          r"forward\(obs Tensor\[2, 4\]\)"):
        config.build()
    assert set(multiprocessing.active_children()) == before


def test_cli_shape_error_is_one_line_and_exit_2(capsys):
    code = main(["train", "--algo", "ppo", "--env", "CartPole", "--set",
                 f"model_class={PACKAGE}:BrokenOutputWidth", "--stop-iters", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "BrokenOutputWidth" in err and "must return (dist_inputs Tensor[2, 2] float" in err


def test_cli_sets_model_class_and_kwargs(tmp_path, capsys):
    code = main(["train", "--algo", "ppo", "--env", "CartPole", "--backend", "inline",
                 "--num-env-runners", "0", "--set", f"model_class={PACKAGE}:TorchActorCritic",
                 "--set", 'model_kwargs={"width": 16}', "--set", "train_batch_size=64",
                 "--set", "minibatch_size=32", "--stop-iters", "1", "--no-eval", "--json",
                 "--logdir", str(tmp_path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    (run,) = os.listdir(tmp_path)
    with open(tmp_path / run / "params.json") as f:
        params = json.load(f)
    assert params["model_class"] == f"{PACKAGE}:TorchActorCritic"
    assert params["model_kwargs"] == {"width": 16}


def test_custom_model_with_learner_processes_and_normalised_observations(tmp_path):
    config = small_ppo(model_class=f"{PACKAGE}:TorchActorCritic", model_kwargs={"width": 16},
                       normalize_obs=True, num_learners=1)
    with config.build() as algo:
        assert algo.learner_group.local is None  # the learner is a process (DDP rank 0)
        before = algo.learner_group.get_weights().copy()
        result = algo.train()
        after = algo.learner_group.get_weights()
        # The workers ran the custom model with the learner's layout: a 4-16-16 MLP x 2
        # plus heads and log_std = the learner's vector, which moved.
        assert len(after) == len(before) == 2 * (4 * 16 + 16 + 16 * 16 + 16) + 16 * 2 + 2 \
            + 16 + 1 + 2
        assert (after != before).any()
        assert result["env_steps_total"] >= 64
        path = algo.save(str(tmp_path / "ckpt"))
    with open(os.path.join(path, "state.json")) as f:
        state = json.load(f)
    assert state["model"] == {"model_class": f"{PACKAGE}:TorchActorCritic",
                              "model_kwargs": {"width": 16}}
    restored = Algorithm.from_checkpoint(path, num_learners=0, backend="inline",
                                         num_env_runners=0)
    with restored:
        assert isinstance(restored.learner_group.local.module, TorchActorCritic)
        assert (restored.learner_group.get_weights() == after).all()
        assert restored.compute_actions([0.0, 0.0, 0.0, 0.0]) in (0, 1)


USER_MODULE = textwrap.dedent('''
    """A user's network, importable only from the directory it lives in."""
    import torch


    class Wide(torch.nn.Module):
        def __init__(self, obs_space, action_space, num_outputs, width=8):
            super().__init__()
            self.pi = torch.nn.Linear(obs_space.shape[0], num_outputs)
            self.vf = torch.nn.Linear(obs_space.shape[0], 1)

        def forward(self, obs):
            return self.pi(obs), self.vf(obs).squeeze(-1)
''')


def _rl(cwd, *argv, pythonpath=ROOT):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-P", "-m", "rl.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_checkpoint_of_a_custom_model_loads_in_a_new_process(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "mynets.py").write_text(USER_MODULE)
    config = small_ppo(model_class="mynets:Wide", backend="inline", num_env_runners=0)
    sys.path.insert(0, str(user))
    try:
        with config.build() as algo:
            algo.train()
            path = algo.save(str(tmp_path / "ckpt"))
    finally:
        sys.path.remove(str(user))
        sys.modules.pop("mynets", None)
    # A new process imports the class again from its name in state.json.
    out = _rl(user, "evaluate", path, "--episodes", "2", "--json",
              pythonpath=f"{ROOT}{os.pathsep}{user}")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["episodes"] == 2
    # Where the module is not importable, the error names the class; exit 2, one line.
    out = _rl(tmp_path, "evaluate", path, "--episodes", "2")
    assert out.returncode == 2, out.stderr
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1 and "mynets:Wide" in err and "cannot import" in err, err
    with pytest.raises(CheckpointError, match="mynets:Wide"):
        Algorithm.from_checkpoint(path)


def test_custom_model_on_the_ray_backend(ray_session):
    require_ray()
    config = small_ppo(model_class=f"{PACKAGE}:TorchActorCritic", model_kwargs={"width": 8},
                       backend="ray")
    with config.build() as algo:
        before = algo.learner_group.get_weights().copy()
        result = algo.train()
        assert result["env_steps_total"] >= 64 and result["workers/healthy"] == 1
        assert (algo.learner_group.get_weights() != before).any()


def test_dqn_custom_q_model_trains_and_acts(tmp_path):
    config = (DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=1,
                                                                 num_envs_per_env_runner=2)
              .training(num_steps_sampled_before_learning_starts=32, train_batch_size=16,
                        model_class=f"{PACKAGE}:TorchQNet", model_kwargs={"width": 16})
              .resources(backend="process").debugging(seed=0))
    with config.build() as algo:
        assert isinstance(algo.learner_group.local.module, TorchQNet)
        before = algo.learner_group.get_weights().copy()
        for _ in range(3):
            algo.train()
        assert algo.learner_group.local.num_updates > 0
        assert (algo.learner_group.get_weights() != before).any()
        assert algo.compute_actions([0.0, 0.0, 0.0, 0.0]) in (0, 1)


@pytest.mark.learning
@pytest.mark.parametrize(("example", "model_class"), [
    ("ppo/cartpole.yaml", f"{PACKAGE}:TorchActorCritic"),
    ("dqn/cartpole.yaml", f"{PACKAGE}:TorchQNet"),
])
def test_custom_model_learns_cartpole(example, model_class):
    """The tuned example with the built-in network swapped for the user's: 475 within
    the example's budget (seed 0)."""
    ex = load_example(os.path.join(ROOT, "tuned_examples", example))
    ex.config.set(model_class=model_class, seed=0)
    with ex.config.build() as algo:
        result, _ = fit(algo, ex.stop, checkpoint_at_end=False)
    print(f"{example} with {model_class}: {result['episode_return_mean']:.1f} at "
          f"{result['env_steps_total']} env steps")
    assert result["episode_return_mean"] >= 475, result
