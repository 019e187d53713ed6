"""User-style callbacks for tests/test_callbacks.py (importable as ``tests.custom_callbacks``)."""

from __future__ import annotations

import os

import rl


class EpisodeStats(rl.Callbacks):
    """Every worker-side hook, checked against the env's own accounting."""

    def on_episode_start(self, episode, env_index):
        assert episode.length == 0 and episode.total_reward == 0.0
        episode.user_data["steps"] = 0
        episode.user_data["env_index"] = env_index

    def on_episode_step(self, episode, env_index, info):
        episode.user_data["steps"] += 1
        assert episode.user_data["env_index"] == env_index

    def on_episode_end(self, episode, env_index, info):
        episode.custom_metrics["length"] = episode.length
        episode.custom_metrics["ret"] = episode.total_reward
        episode.custom_metrics["steps_seen"] = episode.user_data["steps"]
        episode.custom_metrics["last_t"] = info["t"]
        episode.custom_metrics["env_index"] = env_index


class EndOnly(rl.Callbacks):
    def on_episode_end(self, episode, env_index, info):
        episode.custom_metrics["length"] = episode.length


class DriverHooks(rl.Callbacks):
    """Records driver-side calls into a file named by $RL_TEST_HOOKS (one line each)."""

    def _note(self, text):
        with open(os.environ["RL_TEST_HOOKS"], "a") as f:
            f.write(text + "\n")

    def on_algorithm_init(self, algorithm):
        self._note(f"init {algorithm.name}")

    def on_train_result(self, algorithm, result):
        result["custom/driver_iteration"] = float(result["training_iteration"])
        self._note(f"train {result['training_iteration']}")

    def on_evaluate_end(self, algorithm, result):
        result["eval/driver_marker"] = 7.0
        self._note("evaluate")

    def on_checkpoint(self, algorithm, path):
        self._note(f"checkpoint {os.path.isdir(path)}")


def _divide(x):
    return 1 / x


class RaisesAtEpisodeEnd(rl.Callbacks):
    def on_episode_end(self, episode, env_index, info):
        episode.custom_metrics["inverse"] = _divide(0)


class RaisesInTrainResult(rl.Callbacks):
    def on_train_result(self, algorithm, result):
        raise KeyError("no such metric")


class NotANumber(rl.Callbacks):
    def on_episode_end(self, episode, env_index, info):
        episode.custom_metrics["label"] = "long"


class NotCallbacks:
    pass
