"""Checkpoint validation: every damaged part of a saved checkpoint is a one-line
``CheckpointError`` naming the file and why (Python API and CLI exit 2)."""

import json
import os
import shutil

import numpy as np
import pytest

from rl import Algorithm, DQNConfig, PPOConfig
from rl.algorithms.dqn.dqn import DQN
from rl.algorithms.ppo.ppo import PPO
from rl.checkpoint import FORMAT_VERSION, CheckpointError, load_state
from rl.cli import main


def _small(**kw):
    return (PPOConfig().environment("CartPole-v1").resources(backend="inline")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .training(train_batch_size=64, minibatch_size=32, num_epochs=1,
                      model_hiddens=[16, 16])
            .debugging(seed=0).set(normalize_obs=True, **kw))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("saved") / "checkpoint_000001")
    with _small().build() as algo:
        algo.train()
        algo.save(path)
    return path


@pytest.fixture
def ckpt(saved, tmp_path):
    """A fresh copy of the saved checkpoint, to damage."""
    path = str(tmp_path / "checkpoint_000001")
    shutil.copytree(saved, path)
    return path


def _edit_state(path, **changes):
    file = os.path.join(path, "state.json")
    with open(file) as f:
        state = json.load(f)
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    with open(file, "w") as f:
        json.dump(state, f)


def _truncate(file):
    with open(file, "rb") as f:
        data = f.read()
    with open(file, "wb") as f:
        f.write(data[: len(data) // 2])


def _garbage(file):
    with open(file, "wb") as f:
        f.write(b"this is not a checkpoint file\n" * 10)


def _savez(file, **arrays):
    np.savez(file, **arrays)


def _change_model(path, hiddens=(8, 8)):
    with open(os.path.join(path, "state.json")) as f:
        config = json.load(f)["config"]
    _edit_state(path, config={**config, "model_hiddens": list(hiddens)})


DAMAGES = {
    "learner.pt deleted": (lambda p: os.remove(os.path.join(p, "learner.pt")),
                           "learner.pt is missing"),
    "learner.pt truncated": (lambda p: _truncate(os.path.join(p, "learner.pt")),
                             "learner.pt is corrupt or truncated"),
    "learner.pt garbage": (lambda p: _garbage(os.path.join(p, "learner.pt")),
                           "learner.pt is corrupt or truncated"),
    "obs_filter.npz truncated": (lambda p: _truncate(os.path.join(p, "obs_filter.npz")),
                                 "obs_filter.npz is corrupt or truncated"),
    "obs_filter.npz deleted": (lambda p: os.remove(os.path.join(p, "obs_filter.npz")),
                               "obs_filter.npz is missing (the checkpoint is incomplete: its "
                               "run normalized observations)"),
    "obs_filter.npz wrong shape": (lambda p: _savez(os.path.join(p, "obs_filter.npz"),
                                                    mean=np.zeros(7), var=np.ones(7),
                                                    count=np.array(1.0)),
                                   "obs_filter.npz does not fit this env's observations "
                                   "(shape [4])"),
    "state.json garbage": (lambda p: _garbage(os.path.join(p, "state.json")),
                           "state.json is corrupt"),
    "state.json truncated": (lambda p: _truncate(os.path.join(p, "state.json")),
                             "state.json is corrupt"),
    "state.json without iteration": (lambda p: _edit_state(p, iteration=None),
                                     "state.json is incomplete: it has no 'iteration'"),
    "wrong shapes": (_change_model, "learner.pt does not fit the model of this config"),
    "fewer layers": (lambda p: _change_model(p, [8]),
                     "learner.pt does not fit the model of this config (ActorCritic, "
                     "model_hiddens=[8]): it has unexpected pi_trunk"),
    "unknown algorithm": (lambda p: _edit_state(p, algo="td3"),
                          "state.json: written by an algorithm this rl does not have"),
    "newer format": (lambda p: _edit_state(p, format=FORMAT_VERSION + 1, rl_version="9.0"),
                     f"has checkpoint format {FORMAT_VERSION + 1} (written by rl 9.0)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_checkpoint_is_one_clear_error(ckpt, damage):
    do, needle = DAMAGES[damage]
    do(ckpt)
    with pytest.raises(CheckpointError) as info:
        Algorithm.from_checkpoint(ckpt).stop()
    message = str(info.value)
    assert needle in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("damage", ["learner.pt deleted", "learner.pt truncated",
                                    "wrong shapes", "newer format"])
@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_cli_exits_2_with_one_line_on_a_damaged_checkpoint(ckpt, damage, command, capsys,
                                                           tmp_path):
    do, needle = DAMAGES[damage]
    do(ckpt)
    argv = (["evaluate", ckpt, "--episodes", "1"] if command == "evaluate" else
            ["train", "--resume", ckpt, "--stop-iters", "2", "--logdir", str(tmp_path)])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_shape_error_names_the_layer_and_both_shapes(ckpt):
    _change_model(ckpt)
    with pytest.raises(CheckpointError, match=r"has shape \[16, 4\] in the checkpoint and "
                                              r"\[8, 4\] in the model"):
        Algorithm.from_checkpoint(ckpt)


def test_state_json_records_rl_version_and_format(saved):
    import rl

    state = load_state(saved)
    assert state["rl_version"] == rl.__version__ and state["format"] == FORMAT_VERSION


def test_checkpoint_of_an_older_format_still_loads(ckpt):
    _edit_state(ckpt, format=None, rl_version=None)  # format 0: before they were recorded
    with Algorithm.from_checkpoint(ckpt) as algo:
        assert algo.iteration == 1


def test_checkpoint_of_another_algorithm_is_refused(saved):
    with pytest.raises(CheckpointError, match="holds a PPO checkpoint, not DQN"):
        DQN.from_checkpoint(saved)
    with PPO.from_checkpoint(saved) as algo:  # the right class is fine
        assert algo.iteration == 1
    dqn = (DQNConfig().environment("CartPole-v1").resources(backend="inline")
           .env_runners(num_env_runners=0).debugging(seed=0).build())
    with dqn, pytest.raises(CheckpointError, match="written by ppo, not dqn"):
        dqn.restore(saved)


def test_evaluate_does_not_print_resume_messages(tmp_path, capsys, caplog):
    # The checkpoint has 2 workers; evaluation plays in one fresh driver-side worker:
    # nothing about the saved workers is worth saying.
    with _small().env_runners(num_env_runners=2).build() as algo:
        algo.train()
        saved = algo.save(str(tmp_path / "checkpoint"))
    assert main(["evaluate", saved, "--episodes", "1"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "episodes: return" in captured.out
    assert "workers x" not in text and "fresh episodes" not in text, text


def test_evaluate_a_checkpoint_of_a_multi_learner_run(tmp_path, capsys):
    # Evaluation plays in the driver with one CPU learner, whatever the saved run used.
    with _small().resources(backend="process").learners(num_learners=2).build() as algo:
        algo.train()
        saved = algo.save(str(tmp_path / "checkpoint"))
    assert main(["evaluate", saved, "--episodes", "1"]) == 0
    assert "1 episodes: return" in capsys.readouterr().out


def test_evaluate_a_checkpoint_of_a_cuda_run(ckpt, capsys):
    with open(os.path.join(ckpt, "state.json")) as f:
        config = json.load(f)["config"]
    _edit_state(ckpt, config={**config, "device": "cuda", "num_gpus_per_learner": 1})
    assert main(["evaluate", ckpt, "--episodes", "1"]) == 0
    assert "1 episodes: return" in capsys.readouterr().out


def test_evaluate_zero_episodes_is_refused(saved):
    with Algorithm.from_checkpoint(saved) as algo, \
            pytest.raises(ValueError, match="num_episodes must be >= 1, got 0"):
        algo.evaluate(0)


def _dqn(**kw):
    return (DQNConfig().environment("CartPole-v1").resources(backend="inline")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .training(train_batch_size=32, model_hiddens=[16], replay_buffer_capacity=1000,
                      **kw)
            .debugging(seed=0)
            .set(num_steps_sampled_before_learning_starts=32, store_buffer_in_checkpoints=True))


@pytest.mark.parametrize("change", [{"replay_buffer_capacity": 2000},
                                    {"prioritized_replay": True}])
def test_replay_buffer_that_does_not_fit_the_config_is_one_clear_error(tmp_path, change):
    with _dqn().build() as algo:
        algo.train()
        path = algo.save(str(tmp_path / "checkpoint"))
    config = DQN.config_from_checkpoint(path).training(**change)
    with pytest.raises(CheckpointError) as info:
        Algorithm.from_checkpoint(path, **change).stop()
    message = str(info.value)
    assert "replay.npz does not load into this config's replay buffer" in message, message
    assert f"replay_buffer_capacity={config.replay_buffer_capacity}" in message
    assert len(message.splitlines()) == 1


def test_resume_of_a_damaged_checkpoint_starts_no_process(ckpt, tmp_path, capsys,
                                                         monkeypatch):
    # The learner file is checked against the config before any runtime (worker and
    # learner processes, shared-memory boards) is made.
    import rl.algorithms.algorithm as algorithm_module
    from rl.runtime import shm

    made = []
    real = algorithm_module.make_runtime
    monkeypatch.setattr(algorithm_module, "make_runtime",
                        lambda *a, **kw: made.append(a) or real(*a, **kw))
    _truncate(os.path.join(ckpt, "learner.pt"))
    argv = ["train", "--resume", ckpt, "--backend", "process", "--stop-iters", "2",
            "--logdir", str(tmp_path)]
    assert main(argv) == 2
    assert "learner.pt is corrupt or truncated" in capsys.readouterr().err
    assert made == [] and shm.list_segments(shm.driver_prefix()) == []
