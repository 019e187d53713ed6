"""RolloutWorker: columns, bootstrapping, log-probs, next obs, determinism."""

import numpy as np
import torch

from rl.data import columns as C
from rl.envs import register_env, resolve_env
from rl.policies import ModelSpec
from rl.rollout import RolloutWorker, WorkerSpec
from tests.toy_envs import ScriptedEnv


def _spec(name, num_envs=2, T=7, seed=None, **kw):
    # Unseeded, ScriptedEnv numbers its episodes 0, 1, 2, ... (alternating lengths).
    register_env(name, lambda cfg: ScriptedEnv(**cfg))
    env = ScriptedEnv(**kw)
    return WorkerSpec(resolve_env(name), dict(kw), env.observation_space, env.action_space,
                      num_envs, T, seed=seed,
                      model=ModelSpec.create("actor_critic", env.observation_space,
                                             env.action_space, None, {"hiddens": [8]}))


def test_worker_columns_and_bootstrap_values():
    spec = _spec("scripted-boot", num_envs=2, T=8, lengths=(3, 5), max_steps=4)
    worker = RolloutWorker(spec, worker_index=0, boards=None)
    out = worker.sample()
    b = out["batch"]
    T, N = 8, 2
    for col in (C.OBS, C.ACTIONS, C.REWARDS, C.TERMINATEDS, C.TRUNCATEDS, C.LOGP, C.VF_PREDS,
                C.NEXT_VF_PREDS):
        assert b[col].shape[:2] == (T, N), col
    v = worker.policy.value
    obs = b[C.OBS]
    for n in range(N):
        for t in range(T):
            if b[C.TERMINATEDS][t, n]:
                assert b[C.NEXT_VF_PREDS][t, n] == 0.0
            elif b[C.TRUNCATEDS][t, n]:
                # V(final obs): the final obs is [episode, 4] of the truncated episode.
                final = np.array([[obs[t, n, 0], obs[t, n, 1] + 1]], np.float32)
                np.testing.assert_allclose(b[C.NEXT_VF_PREDS][t, n], v(torch.from_numpy(final))[0],
                                           rtol=1e-5)
            elif t < T - 1:
                assert b[C.NEXT_VF_PREDS][t, n] == b[C.VF_PREDS][t + 1, n]
    # Fragment end bootstraps from V(obs_T) = value of the worker's current obs.
    running = ~(b[C.TERMINATEDS][-1] | b[C.TRUNCATEDS][-1])
    assert running.any()
    np.testing.assert_allclose(b[C.NEXT_VF_PREDS][-1][running],
                               v(torch.from_numpy(worker.obs))[running], rtol=1e-5)
    # Episodes of length 3 terminate; the length-5 ones are truncated at 4.
    assert b[C.TRUNCATEDS].sum() > 0 and b[C.TERMINATEDS].sum() > 0
    assert set(out["episode_lens"].tolist()) <= {3, 4}
    # Rewards are t+1 of each step, never a reset step.
    assert (b[C.REWARDS] == obs[:, :, 1] + 1).all()


def test_logp_matches_the_distribution():
    spec = _spec("scripted-logp", num_envs=3, T=5)
    worker = RolloutWorker(spec, worker_index=1, boards=None)
    b = worker.sample()["batch"]
    obs = torch.from_numpy(b[C.OBS].reshape(-1, 2))
    logits, _ = worker.policy.module(obs)
    logp = torch.log_softmax(logits, -1).gather(
        1, torch.from_numpy(b[C.ACTIONS].reshape(-1, 1))).squeeze(1)
    np.testing.assert_allclose(b[C.LOGP].reshape(-1), logp.detach().numpy(), rtol=1e-5)


def test_next_obs_for_replay_uses_true_final_obs():
    spec = _spec("scripted-next", num_envs=1, T=6, lengths=(2,))
    spec.needs_next_obs = True
    worker = RolloutWorker(spec, worker_index=0, boards=None)
    b = worker.sample()["batch"]
    obs, nxt = b[C.OBS][:, 0], b[C.NEXT_OBS][:, 0]
    for t in range(6):
        assert nxt[t, 0] == obs[t, 0]  # same episode id: never the reset obs
        assert nxt[t, 1] == obs[t, 1] + 1


def test_same_seed_same_fragment():
    torch.manual_seed(0)  # same initial weights; the action sampling seed comes from the spec
    a = RolloutWorker(_spec("scripted-det", T=9, seed=0), 0, None).sample()["batch"]
    torch.manual_seed(0)
    b = RolloutWorker(_spec("scripted-det", T=9, seed=0), 0, None).sample()["batch"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
