"""VectorEnv: same-step autoreset, per-episode seeding, failing sub-envs, and the state
that replays running episodes for exact resume."""

import numpy as np
import pytest

from rl.envs import VectorEnv, resolve_env
from rl.envs import make_env as make_one_env
from rl.envs.vector import episode_seed
from tests.toy_envs import ScriptedEnv


def test_vector_env_same_step_autoreset_returns_final_obs():
    venv = VectorEnv(lambda: ScriptedEnv(lengths=(2,)), 1, seed=None)
    obs = venv.reset()
    assert obs[0].tolist() == [0, 0]
    r1 = venv.step(np.array([0]))
    assert r1.obs[0].tolist() == [0, 1] and not r1.final_obs
    r2 = venv.step(np.array([0]))
    # The ending step already returns the next episode's first obs; the true final
    # obs comes separately and the reset is not a transition.
    assert r2.terminateds[0] and r2.final_obs[0].tolist() == [0, 2]
    assert r2.obs[0].tolist() == [1, 0]
    assert r2.episodes == [(3.0, 2)]


def test_every_episode_is_seeded_from_seed_global_index_and_episode_number():
    venv = VectorEnv(lambda: ScriptedEnv(lengths=(1,)), 3, seed=10, first_index=4)
    # ScriptedEnv maps seed s to episode id 100*s (float32 observations).
    for episode in range(3):
        obs = venv.reset() if episode == 0 else venv.step(np.zeros(3, np.int64)).obs
        expected = [np.float32(100 * episode_seed(10, 4 + i, episode)) for i in range(3)]
        assert obs[:, 0].tolist() == expected
    assert len({float(x) for x in obs[:, 0]}) == 3


def test_a_failing_reset_recreates_the_sub_env_or_raises():
    from tests.toy_envs import FlakyResetCartPole

    venv = VectorEnv(FlakyResetCartPole, 2, seed=0, restart_failed=True)
    venv.reset()
    episodes = 0
    rng = np.random.default_rng(0)
    while episodes < 6:
        res = venv.step(rng.integers(0, 2, 2))
        episodes += len(res.episodes)
        assert not res.failed  # the episodes themselves are fine, only resets fail
    assert {(e[1], e[2]) for e in venv.errors} == {("reset", "RuntimeError: reset failed")}
    assert len(venv.errors) >= 4
    strict = VectorEnv(FlakyResetCartPole, 1, seed=0)
    strict.reset()
    with pytest.raises(RuntimeError, match="reset failed"):
        for _ in range(1000):
            strict.step(np.zeros(1, np.int64))


def test_vector_env_state_replays_the_running_episodes():
    spec = resolve_env("CartPole-v1")
    venv = VectorEnv(lambda: make_one_env(spec), 3, seed=5)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):
        venv.step(rng.integers(0, 2, 3))
    state = venv.get_state()
    after = [venv.step(a).obs.copy() for a in rng.integers(0, 2, (20, 3))]
    other = VectorEnv(lambda: make_one_env(spec), 3, seed=5)
    other.reset()
    assert other.set_state(state) == []
    np.testing.assert_array_equal(other.obs, state["obs"])
    rng = np.random.default_rng(0)
    rng.integers(0, 2, (30, 3))
    for a, obs in zip(rng.integers(0, 2, (20, 3)), after):
        np.testing.assert_array_equal(other.step(a).obs, obs)


def test_vector_env_state_replays_atari_games_across_lost_lives():
    import ale_py  # noqa: F401  (the atari extra, installed by make test)
    spec = resolve_env("ALE/Breakout-v5")
    venv = VectorEnv(lambda: make_one_env(spec), 2, seed=3)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(700):
        venv.step(rng.integers(0, 4, 2))
    state = venv.get_state()
    # Life losses inside the running games: soft resets that continue the game.
    assert sum(len(state[f"soft_resets_{i}"]) for i in range(2)) > 0
    after = [venv.step(a).obs.copy() for a in rng.integers(0, 4, (50, 2))]
    other = VectorEnv(lambda: make_one_env(spec), 2, seed=3)
    other.reset()
    assert other.set_state(state) == []
    rng = np.random.default_rng(0)
    rng.integers(0, 4, (700, 2))
    for a, obs in zip(rng.integers(0, 4, (50, 2)), after):
        np.testing.assert_array_equal(other.step(a).obs, obs)


def test_vector_env_reports_envs_it_could_not_replay():
    from tests.toy_envs import NoisyResetEnv

    venv = VectorEnv(NoisyResetEnv, 2, seed=1)
    venv.reset()
    venv.step(np.zeros(2, np.int64))
    other = VectorEnv(NoisyResetEnv, 2, seed=1)
    other.reset()
    assert other.set_state(venv.get_state()) == [0, 1]


def _balance(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Sub-env 0 balances its pole (games of up to 500 steps), the others act at random
    # (games of a few dozen): the running games start at very different steps.
    actions = rng.integers(0, 2, len(obs))
    actions[0] = int(obs[0, 2] + obs[0, 3] > 0)
    return actions


def _play(venv: VectorEnv, rng: np.random.Generator, steps: int) -> None:
    for _ in range(steps):
        venv.step(_balance(venv.obs, rng))


def _cartpoles(n: int, **kw) -> VectorEnv:
    spec = resolve_env("CartPole-v1")
    venv = VectorEnv(lambda: make_one_env(spec), n, seed=11, **kw)
    venv.reset()
    return venv


def test_replay_after_the_action_log_was_trimmed_and_grown_and_after_a_second_save(
        monkeypatch):
    from rl import resume

    # A small first log: over 1400 steps it drops the rows no running game needs and
    # grows for the long games, many times.
    monkeypatch.setattr(resume, "_INITIAL_ROWS", 8)
    venv = _cartpoles(3)
    rng = np.random.default_rng(0)
    _play(venv, rng, 1400)
    assert venv.get_state()["episode_lens"][0] > 100
    other = _cartpoles(3)
    assert other.set_state(venv.get_state()) == []
    np.testing.assert_array_equal(other.obs, venv.obs)
    for _ in range(300):
        actions = _balance(venv.obs, rng)
        np.testing.assert_array_equal(other.step(actions).obs, venv.step(actions).obs)
    # The restored env logs its replayed games too: its own state replays them.
    third = _cartpoles(3)
    assert third.set_state(other.get_state()) == []
    for _ in range(100):
        actions = _balance(venv.obs, rng)
        np.testing.assert_array_equal(third.step(actions).obs, venv.step(actions).obs)


def test_games_longer_than_the_replay_limit_start_afresh(monkeypatch):
    from rl import resume

    monkeypatch.setattr(resume, "MAX_REPLAY_STEPS", 40)
    venv = _cartpoles(4)
    rng = np.random.default_rng(1)
    _play(venv, rng, 300)
    state = venv.get_state()
    too_long = [i for i, n in enumerate(state["episode_lens"]) if n >= 40]
    assert 0 in too_long and len(too_long) < 4
    other = _cartpoles(4)
    assert other.set_state(state) == too_long
    replayed = [i for i in range(4) if i not in too_long]
    np.testing.assert_array_equal(other.obs[replayed], venv.obs[replayed])


@pytest.mark.parametrize("kw", [{"record_actions": False}, {"seed": None}],
                         ids=["not-recording", "unseeded"])
def test_without_recording_set_state_starts_fresh_episodes(kw):
    spec = resolve_env("CartPole-v1")
    venv = VectorEnv(lambda: make_one_env(spec), 2, **{"seed": 3, **kw})
    venv.reset()
    for a in np.random.default_rng(0).integers(0, 2, (10, 2)):
        venv.step(a)
    state = venv.get_state()
    assert not any(key.startswith("actions_") for key in state)
    other = VectorEnv(lambda: make_one_env(spec), 2, **{"seed": 3, **kw})
    other.reset()
    assert other.set_state(state) == [0, 1]
    assert (other.get_state()["episode_lens"] == 0).all()


def test_state_replays_continuous_actions():
    spec = resolve_env("Pendulum-v1")
    venv = VectorEnv(lambda: make_one_env(spec), 2, seed=4)
    venv.reset()
    rng = np.random.default_rng(0)
    for a in rng.uniform(-2, 2, (30, 2, 1)).astype(np.float32):
        venv.step(a)
    other = VectorEnv(lambda: make_one_env(spec), 2, seed=4)
    other.reset()
    assert other.set_state(venv.get_state()) == []
    for a in rng.uniform(-2, 2, (10, 2, 1)).astype(np.float32):
        np.testing.assert_array_equal(other.step(a).obs, venv.step(a).obs)
