"""IMPALA: config validation, the V-trace loss on a fixed batch, learner updates, smoke
runs on every backend and action space, the concurrent learner's drops, failures,
checkpoints and clean stop."""

import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl import Algorithm, ConfigError, IMPALAConfig
from rl import checkpoint as ckpt
from rl.algorithms.impala.learner import IMPALALearner, loss_inputs, stack_fragments
from rl.algorithms.impala.loss import IMPALALossSettings, impala_loss
from rl.algorithms.registry import algorithm_class, config_class
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner.optim import Adam
from rl.policies import ActorCritic, DistributionSpec, ModelSpec
from rl.resume import pack_impala_state, unpack_impala_state
from rl.runtime import shm

MATCH = "tests.toy_envs:MatchBitsEnv"
FLASH = "tests.toy_envs:FlashEnv"
KEYS = ("training_iteration", "env_steps_total", "episode_return_mean", "env_steps_per_s",
        "learner/num_updates", "learner/updates_per_s", "learner/busy_frac", "learner/policy_lag_mean",
        "learner/policy_lag_max", "learner/queue_depth", "learner/dropped_env_steps",
        "learner/env_steps_trained", "learner/weights_version", "timers/sample_s",
        "workers/healthy")
LOSS_KEYS = ("learner/policy_loss", "learner/vf_loss", "learner/entropy",
             "learner/grad_norm", "learner/mean_is_ratio", "learner/lr")


def small(env="CartPole-v1", backend="inline", runners=2, **kw) -> IMPALAConfig:
    return (IMPALAConfig().environment(env).resources(backend=backend)
            .env_runners(num_env_runners=runners, num_envs_per_env_runner=2,
                         rollout_fragment_length=10)
            .training(train_batch_size=40, lr=1e-3, model_hiddens=[16])
            .debugging(seed=0).set(**kw))


def learner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "impala-learner"]


# ---------------------------------------------------------------------------- config
def test_registered_and_exported():
    assert config_class("impala") is IMPALAConfig
    assert algorithm_class("IMPALA").__name__ == "IMPALA"


def test_validation_states_the_constraint():
    with pytest.raises(ConfigError, match=r"multiple of one fragment = .* 50 x 8 = 400"):
        IMPALAConfig().environment("CartPole-v1").training(train_batch_size=500).validate()
    with pytest.raises(ConfigError, match=r"num_learners \(4\) learners split a train batch "
                                          r"by whole unrolls.* = 100 / 50 gives only 2"):
        IMPALAConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=1).training(
            train_batch_size=100).learners(num_learners=4).validate()
    with pytest.raises(ConfigError, match="must be an int for IMPALA"):
        IMPALAConfig().environment("CartPole-v1").env_runners(
            rollout_fragment_length="auto").validate()
    with pytest.raises(ConfigError, match=r"minibatch_size \(120\) must be a multiple of "
                                          r"rollout_fragment_length \(50\)"):
        IMPALAConfig().environment("CartPole-v1").training(minibatch_size=120).validate()
    with pytest.raises(ConfigError, match="choose one of: adam, rmsprop"):
        IMPALAConfig().training(optimizer="sgd")
    with pytest.raises(ConfigError, match="learner_queue_size must be >= 1"):
        IMPALAConfig().environment("CartPole-v1").training(learner_queue_size=0).validate()
    with pytest.raises(ConfigError, match="did you mean max_requests_in_flight_per_env_runner"):
        IMPALAConfig().env_runners(max_request_in_flight_per_env_runner=2)


def test_round_trip():
    cfg = small(optimizer="rmsprop", entropy_coeff_final=0.0, minibatch_size=20)
    assert IMPALAConfig.from_yaml(cfg.to_yaml()) == cfg


# ---------------------------------------------------------------------------- loss
def fixed_batch(module: ActorCritic, T=6, N=3, seed=0):
    """Random unrolls with terminations and truncations inside, on-policy log-probs."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, N, 4, generator=g)
    actions = torch.randint(3, (T, N), generator=g)
    terminateds = np.zeros((T, N), bool)
    truncateds = np.zeros((T, N), bool)
    terminateds[2, 0] = terminateds[5, 2] = True
    truncateds[4, 1] = truncateds[1, 2] = truncateds[5, 0] = True
    with torch.no_grad():
        logits, _ = module(obs.reshape(T * N, 4))
        logp = DistributionSpec(gym.spaces.Discrete(logits.shape[-1]))(logits).log_prob(actions.reshape(-1)).reshape(T, N)
    return SampleBatch({
        C.OBS: obs.numpy(), C.ACTIONS: actions.numpy(), C.LOGP: logp.numpy(),
        C.REWARDS: torch.randn(T, N, generator=g).numpy(),
        C.TERMINATEDS: terminateds, C.TRUNCATEDS: truncateds,
        C.NEXT_OBS: torch.randn(T, N, 4, generator=g).numpy(),
    })


def td1_targets(module, batch, gamma):
    """n-step TD(1) returns by a plain loop: bootstrap V(x_T), V(final obs) at truncations."""
    T, N = batch[C.REWARDS].shape
    with torch.no_grad():
        next_v = module(torch.from_numpy(batch[C.NEXT_OBS]).reshape(T * N, 4))[1]
        next_v = next_v.reshape(T, N).numpy()
    G = np.zeros((T, N))
    for n in range(N):
        for t in reversed(range(T)):
            if batch[C.TERMINATEDS][t, n]:
                nxt = 0.0
            elif batch[C.TRUNCATEDS][t, n] or t == T - 1:
                nxt = next_v[t, n]
            else:
                nxt = G[t + 1, n]
            G[t, n] = batch[C.REWARDS][t, n] + gamma * nxt
    return G


def test_on_policy_loss_uses_td1_targets():
    torch.manual_seed(0)
    module = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), 3, hiddens=[8])
    dist_spec = DistributionSpec(gym.spaces.Discrete(3))
    batch = fixed_batch(module)
    settings = IMPALALossSettings(gamma=0.9, vf_loss_coeff=0.25, entropy_coeff=0.01,
                                  clip_rho_threshold=1.0, clip_c_threshold=1.0,
                                  clip_pg_rho_threshold=1.0)
    loss, m = impala_loss(module, dist_spec, loss_inputs(batch, torch.device("cpu")), settings)

    G = td1_targets(module, batch, 0.9)
    with torch.no_grad():
        logits, values = module(torch.from_numpy(batch[C.OBS]).reshape(-1, 4))
        values = values.reshape(G.shape).numpy()
        entropy = dist_spec(logits).entropy().mean().item()
    adv = G - values  # on-policy: every rho is 1, so pg advantage = v_s - V(x_s)
    np.testing.assert_allclose(m["vf_loss"], 0.5 * np.mean(adv**2), rtol=1e-5)
    np.testing.assert_allclose(m["policy_loss"], -np.mean(batch[C.LOGP] * adv), rtol=1e-5)
    np.testing.assert_allclose(m["entropy"], entropy, rtol=1e-6)
    np.testing.assert_allclose(m["mean_is_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(loss.item(), m["policy_loss"] + 0.25 * m["vf_loss"]
                               - 0.01 * m["entropy"], rtol=1e-5)


def test_loss_gradient_reaches_policy_and_value_but_not_through_targets():
    torch.manual_seed(1)
    module = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), 3, hiddens=[8])
    batch = fixed_batch(module, seed=3)
    batch[C.LOGP] = batch[C.LOGP] - 0.5  # off-policy: ratios e^0.5 get clipped to 1
    settings = IMPALALossSettings(0.99, 0.5, 0.0, 1.0, 1.0, 1.0)
    loss, m = impala_loss(module, DistributionSpec(gym.spaces.Discrete(3)),
                          loss_inputs(batch, torch.device("cpu")), settings)
    loss.backward()
    assert module.pi_head.weight.grad.abs().sum() > 0
    assert module.vf_head.weight.grad.abs().sum() > 0
    assert m["rho_clip_frac"] == 1.0 and m["approx_kl"] == pytest.approx(-0.5, abs=1e-5)


def test_stack_fragments_along_the_env_axis():
    a = {k: np.zeros((5, 2)) for k in (C.LOGP, C.REWARDS, C.TERMINATEDS, C.TRUNCATEDS)}
    a.update({C.OBS: np.zeros((5, 2, 3)), C.NEXT_OBS: np.zeros((5, 2, 3)),
              C.ACTIONS: np.zeros((5, 2), np.int64), C.VF_PREDS: np.zeros((5, 2))})
    b = {k: v + 1 for k, v in a.items()}
    batch = stack_fragments([a, b])
    assert batch[C.OBS].shape == (5, 4, 3) and C.VF_PREDS not in batch
    assert batch[C.REWARDS][:, 2:].min() == 1 and batch[C.REWARDS][:, :2].max() == 0


@pytest.mark.parametrize("optimizer,eps_type", [("adam", Adam),
                                                 ("rmsprop", torch.optim.RMSprop)])
def test_learner_update_with_minibatches_and_epochs(optimizer, eps_type):
    cfg = small(optimizer=optimizer, num_epochs=2, minibatch_size=10, grad_clip=1e-3)
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (4,))
    learner = IMPALALearner(ModelSpec.create("actor_critic", space, gym.spaces.Discrete(3), None,
                                             {"hiddens": [8]}), cfg)
    assert isinstance(learner.optimizer, eps_type)
    if optimizer == "rmsprop":
        assert learner.optimizer.param_groups[0]["eps"] == 0.01
    before = learner.get_weights()
    metrics = learner.update(fixed_batch(learner.module, T=10, N=4), lr=5e-4)
    # 2 epochs x (4 unrolls / 1 unroll per minibatch) SGD steps.
    assert learner.num_updates == 8
    assert metrics["lr"] == 5e-4 and metrics["grad_norm"] > 1e-3  # reported before clipping
    assert not np.array_equal(before, learner.get_weights())


# ---------------------------------------------------------------------------- smoke runs
SPACES = {"discrete": "CartPole-v1", "multi_discrete": MATCH, "box": "Pendulum-v1",
          "image": FLASH}


@pytest.mark.parametrize("backend", ["inline", "process"])
@pytest.mark.parametrize("space", list(SPACES))
def test_smoke(backend, space, wait_gone):
    algo = small(SPACES[space], backend=backend).build()
    pids = [a.pid for a in getattr(algo.runtime, "_actors", []) if hasattr(a, "pid")]
    try:
        results = [algo.train() for _ in range(3)]
        for _ in range(100):  # the process backend's learner may lag a few iterations
            if results[-1]["learner/num_updates"] >= 2 and "learner/vf_loss" in results[-1]:
                break
            results.append(algo.train())
    finally:
        algo.stop()
    r = results[-1]
    for key in KEYS + LOSS_KEYS:
        assert key in r, key
    assert all(np.isfinite(r[k]) for k in LOSS_KEYS)
    assert r["env_steps_total"] >= 40 * len(results)
    assert r["learner/policy_lag_max"] >= 0
    # stop() joined the learner thread and ended every worker process.
    assert learner_threads() == []
    assert wait_gone(pids, 5.0) == []


def test_inline_runs_are_reproducible():
    def run():
        with small(runners=1).build() as algo:
            return [algo.train() for _ in range(4)]

    for ra, rb in zip(run(), run()):
        for key in ("env_steps_total", "episode_return_mean", "learner/policy_loss",
                    "learner/vf_loss", "learner/policy_lag_mean", "learner/num_updates"):
            np.testing.assert_equal(ra[key], rb[key])


def test_inline_counts_one_update_per_train_batch():
    with small(runners=2, max_requests_in_flight_per_env_runner=1).build() as algo:
        results = [algo.train() for _ in range(5)]
    last = results[-1]
    # Each fragment is 10 x 2 = 20 steps; a train batch is 40: two fragments.
    assert last["learner/env_steps_trained"] == 40 * last["learner/num_updates"]
    assert last["learner/dropped_env_steps"] == 0
    assert last["learner/weights_version"] == 1 + last["learner/num_updates"]


def test_slow_learner_drops_the_oldest_batches(monkeypatch):
    original = IMPALALearner.update

    def slow_update(self, batch, **hyper):
        threading.Event().wait(0.2)
        return original(self, batch, **hyper)

    monkeypatch.setattr(IMPALALearner, "update", slow_update)
    with small(backend="process", learner_queue_size=1).build() as algo:
        results = [algo.train() for _ in range(15)]
    r = results[-1]
    assert r["learner/dropped_env_steps"] > 0 and r["learner/dropped_env_steps"] % 40 == 0
    assert r["learner/env_steps_trained"] + r["learner/dropped_env_steps"] <= r["env_steps_total"]
    assert r["learner/queue_depth"] <= 1
    assert learner_threads() == []


def test_learner_failure_surfaces_in_train(monkeypatch):
    def broken(self, batch, **hyper):
        raise ValueError("boom in the learner")

    monkeypatch.setattr(IMPALALearner, "update", broken)
    algo = small(backend="process").build()
    try:
        with pytest.raises(RuntimeError, match="learner thread failed.*boom in the learner"):
            for _ in range(200):
                algo.train()
    finally:
        algo.stop()
    assert learner_threads() == []


def test_checkpoint_round_trip(tmp_path):
    with small().build() as algo:
        for _ in range(3):
            algo.train()
        path = algo.save(str(tmp_path / "ckpt"))
        weights = algo.learner_group.get_weights()
        updates = algo.runner.updates
    restored = Algorithm.from_checkpoint(path)
    try:
        assert restored.runner.updates == updates > 0
        np.testing.assert_array_equal(restored.learner_group.get_weights(), weights)
        assert restored.train()["training_iteration"] == 4
    finally:
        restored.stop()


def test_resume_on_the_process_backend_keeps_the_fragments_in_flight(tmp_path):
    # Nothing sampled is lost across a checkpoint: the fragments the workers had
    # already sampled come back in flight, and the run goes on from them.
    with small(backend="process", max_requests_in_flight_per_env_runner=2).build() as algo:
        for _ in range(3):
            algo.train()
        in_flight = len(algo.workers.in_flight)
        path = algo.save(str(tmp_path / "ckpt"))
        version = algo.board.version
    assert in_flight == 4  # 2 workers x 2 requests
    with Algorithm.from_checkpoint(path) as algo:
        assert len(algo.workers.in_flight) == 4
        # The saved numbering goes on (a fresh board is at 1 already: then 2 aliases 1).
        assert algo.board.version == max(version, 2)
        results = [algo.train() for _ in range(3)]
        prefix = algo.runtime.prefix
    assert results[-1]["training_iteration"] == 6
    assert results[-1]["learner/weights_version"] >= version
    assert shm.list_segments(prefix) == []


def test_resume_state_packs_worker_results_without_pickle(tmp_path):
    result = {"batch": {C.REWARDS: np.ones((2, 3), np.float32), C.ACTIONS: np.zeros((2, 3))},
              "episode_returns": np.array([1.5]), "episode_lens": np.array([7]),
              "weights_version": 4, "obs_stats": (np.zeros(2), np.ones(2), 6.0),
              "worker_index": 1, "env_errors": [(0, "step", "boom")], "discarded": None}
    queued = ([result["batch"]], 6, [3])
    state, arrays = pack_impala_state(board=np.arange(5, dtype=np.float32), board_version=9,
                                      obs_filter_board=np.full(3, 2.0, np.float32),
                                      updates_at={"9": 12}, pending=[result["batch"]],
                                      pending_versions=[4], queued=[queued],
                                      in_flight=[(1, result)])
    ckpt.save_checkpoint(str(tmp_path / "c"), {"impala": state}, arrays={"impala": arrays})
    loaded = unpack_impala_state(ckpt.load_state(str(tmp_path / "c"))["impala"],
                                 ckpt.load_arrays(str(tmp_path / "c"), "impala"))
    assert loaded["board_version"] == 9 and loaded["updates_at"] == {"9": 12}
    np.testing.assert_array_equal(loaded["board"], np.arange(5))
    np.testing.assert_array_equal(loaded["obs_filter_board"], np.full(3, 2.0))
    (index, back), = loaded["in_flight"]
    assert index == 1 and back["weights_version"] == 4 and back["discarded"] is None
    assert back["env_errors"] == [[0, "step", "boom"]] and back["obs_stats"][2] == 6.0
    np.testing.assert_array_equal(back["batch"][C.REWARDS], result["batch"][C.REWARDS])
    np.testing.assert_array_equal(back["obs_stats"][1], np.ones(2))
    fragments, env_steps, versions = loaded["queued"][0]
    assert env_steps == 6 and versions == [3]
    np.testing.assert_array_equal(fragments[0][C.REWARDS], result["batch"][C.REWARDS])
    np.testing.assert_array_equal(loaded["pending"][0][C.ACTIONS], np.zeros((2, 3)))


def test_stop_is_idempotent_and_joins_a_running_learner():
    algo = small(backend="process").build()
    algo.train()
    assert len(learner_threads()) == 1
    algo.stop()
    algo.stop()
    assert learner_threads() == []
    with pytest.raises(RuntimeError, match="was stopped"):
        algo.train()
