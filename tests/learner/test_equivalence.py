"""N learners equal one: a PPO update on 2 ranks matches one learner on the union.

Each rank trains on an equal, contiguous half of the batch and all ranks draw the same
minibatch positions (``PPOLearner.epoch_order`` from a shared seed). The reference is a
single learner whose minibatch ``j`` is the union of the ranks' minibatches ``j`` (the
same positions in both halves), with twice the minibatch size. DDP averages the ranks'
gradients, which is the gradient of the mean loss over the union, and advantages are
normalised with the statistics of the whole union on both sides (the group's learners
all-reduce them; we chose that over disabling normalisation so that the default config
is the one tested). So the parameters agree up to float rounding.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl import PPOConfig
from rl.algorithms.ppo.learner import PPOLearner
from rl.data import SampleBatch
from rl.data import columns as C
from rl.learner import LearnerGroup, merge_metrics, shard_batch
from rl.policies import ModelSpec
from tests.conftest import open_runtime

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACTIONS = gym.spaces.Discrete(3)
ROWS, MINIBATCH = 256, 32


class UnionOrderLearner(PPOLearner):
    """The single-learner reference: minibatch j = positions p[j] of each half."""

    def epoch_order(self, n: int) -> np.ndarray:
        half = n // 2
        p = self.rng.permutation(half)
        chunks = np.split(p, half // MINIBATCH)
        return np.concatenate([np.concatenate([c, c + half]) for c in chunks])


def config(**overrides) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1")
            .training(minibatch_size=MINIBATCH, num_epochs=3, lr=3e-3, grad_clip=0.5)
            .debugging(seed=0).set(**overrides))


def learner_factory(cls: type[PPOLearner], cfg: PPOConfig):
    # partials of importable classes: picklable by reference into the learner processes
    model = ModelSpec.create("actor_critic", OBS, ACTIONS, None, {"hiddens": [32, 32]})
    return functools.partial(cls, model, cfg, "cpu")


def fixed_batch(seed: int = 1) -> SampleBatch:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(ROWS, 3)).astype(np.float32)
    actions = rng.integers(0, 3, ROWS)
    logp = logits[np.arange(ROWS), actions] - np.log(np.exp(logits).sum(1))
    values = rng.normal(size=ROWS).astype(np.float32)
    return SampleBatch({
        C.OBS: rng.uniform(-1, 1, (ROWS, 4)).astype(np.float32),
        C.ACTIONS: actions,
        C.LOGP: logp.astype(np.float32),
        C.VF_PREDS: values,
        C.ADVANTAGES: (rng.normal(size=ROWS) * 3 + 1).astype(np.float32),
        C.VALUE_TARGETS: (values + rng.normal(size=ROWS)).astype(np.float32),
        C.BEHAVIOUR_LOGITS: logits,
    })


@pytest.mark.parametrize("settings", [
    {},
    {"kl_coeff": 0.3, "vf_clip_param": 0.5},  # adaptive KL from rank-averaged metrics
    {"target_kl": 1e-6},  # the early stop reads the rank-averaged KL: one epoch on both
], ids=["plain", "kl_penalty", "early_stop"])
def test_two_learners_match_one_on_the_union(settings):
    batch = fixed_batch()
    torch.manual_seed(0)  # what a learner rank does before building its learner
    reference = learner_factory(UnionOrderLearner, config(minibatch_size=2 * MINIBATCH,
                                                          **settings))()
    initial = reference.get_weights()
    expected = reference.update(batch, lr=3e-3)

    for runtime in open_runtime("process"):
        group = LearnerGroup(learner_factory(PPOLearner, config(num_learners=2, **settings)),
                             config(num_learners=2), runtime)
        try:
            np.testing.assert_array_equal(group.get_weights(), initial)
            got = group.update(batch, lr=3e-3)
            rank0 = group.get_weights()
            rank1 = runtime.get(group.actors[1].call("get_weights"))
        finally:
            group.stop()

    np.testing.assert_array_equal(rank0, rank1)  # DDP kept the ranks identical
    assert np.abs(rank0 - initial).max() > 1e-3  # the update moved the weights
    np.testing.assert_allclose(rank0, reference.get_weights(), rtol=0, atol=1e-5)
    assert got["epochs"] == expected["epochs"] == (1.0 if "target_kl" in settings else 3.0)
    for key in ("policy_loss", "vf_loss", "entropy", "approx_kl", "clip_frac", "grad_norm",
                "kl_coeff"):
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key


def test_shards_are_equal_contiguous_and_drop_the_remainder():
    batch = SampleBatch({"x": np.arange(11), "y": np.arange(22).reshape(11, 2)})
    shards = shard_batch(batch, 3)
    assert [s["x"].tolist() for s in shards] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert shards[2]["y"].tolist() == [[12, 13], [14, 15], [16, 17]]
    assert shard_batch(batch, 1)[0] is batch
    time_major = SampleBatch({"r": np.arange(15).reshape(3, 5)})  # [T=3, N=5]
    cols = shard_batch(time_major, 2, axis=1)
    assert [c["r"].tolist() for c in cols] == [[[0, 1], [5, 6], [10, 11]],
                                               [[2, 3], [7, 8], [12, 13]]]


def test_metrics_average_and_per_row_arrays_concatenate_in_shard_order():
    merged = merge_metrics([{"loss": 1.0, "td": np.array([1, 2])},
                            {"loss": 3.0, "td": np.array([3, 4])}])
    assert merged["loss"] == 2.0 and merged["td"].tolist() == [1, 2, 3, 4]


# ------------------------------------------------------------------------------ IMPALA


def impala_learner_factory():
    from rl import IMPALAConfig
    from rl.algorithms.impala.learner import IMPALALearner

    cfg = (IMPALAConfig().environment("CartPole-v1")
           .env_runners(num_envs_per_env_runner=2, rollout_fragment_length=6)
           .training(train_batch_size=36, lr=3e-3, num_epochs=2).debugging(seed=0))
    model = ModelSpec.create("actor_critic", gym.spaces.Box(-5, 5, (4,), np.float32), ACTIONS,
                             None, {"hiddens": [16]})
    return cfg, functools.partial(IMPALALearner, model, cfg, "cpu")


def test_impala_learners_reading_shared_fragments_match_the_stacked_batch_path():
    # Three fragments of 4 env columns on 2 learners: 6 columns each, so the middle
    # fragment straddles the ranks. Each rank resolves its pieces from shared memory;
    # the parameters equal those of the data path, which ships each rank its shard of
    # the stacked batch.
    from rl.algorithms.impala.learner import stack_fragments
    from rl.runtime import shared, shm
    from tests.algorithms.test_impala import fixed_batch

    cfg, factory = impala_learner_factory()
    probe = factory()
    # T=1100: obs and next_obs (70 KB each) travel through shared-memory segments.
    fragments = [dict(fixed_batch(probe.module, T=1100, N=4, seed=s)) for s in range(3)]
    results = {}
    for path in ("data", "handles"):
        for rt in open_runtime("process"):
            group = LearnerGroup(factory, cfg.copy().set(num_learners=2), rt, shard_axis=1)
            try:
                if path == "data":
                    metrics = group.update(stack_fragments(fragments), lr=3e-3)
                else:
                    share = shared.shm_sharer(rt.prefix)
                    handles = [share(f) for f in fragments]
                    assert len(shm.list_segments(rt.prefix)) == 6  # obs, next_obs x 3
                    data = sum(v.nbytes for v in fragments[0].values())
                    assert all(len(h.payload) < data / 2 for h in handles)
                    metrics = group.update_fragments(handles, 4, lr=3e-3)
                    # Released once both ranks answered.
                    assert shm.list_segments(rt.prefix) == []
                results[path] = (group.get_weights(), metrics)
            finally:
                group.stop()
    np.testing.assert_allclose(results["handles"][0], results["data"][0], rtol=0, atol=1e-7)
    for key, value in results["data"][1].items():
        assert results["handles"][1][key] == pytest.approx(value), key


def test_shard_bounds_cover_every_item_in_near_equal_contiguous_ranges():
    from rl.learner.group import shard_bounds

    assert shard_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert shard_bounds(4, 2) == [(0, 2), (2, 4)]
    with pytest.raises(ValueError, match="between 1 and 2"):
        shard_bounds(2, 3)


@pytest.mark.parametrize("padded", [False, True])
def test_impala_learners_train_every_column_when_the_columns_do_not_divide(padded):
    # Three fragments of one env column on 2 learners: rank 0 trains two columns, rank
    # 1 one (before, the third column was dropped). Each rank weights its gradients by
    # its share of the trained rows, so the parameters equal one learner's on the whole
    # batch, also when padding rows (multi-agent ``valid``) make the shares unequal.
    from rl.algorithms.impala.learner import stack_fragments
    from tests.algorithms.test_impala import fixed_batch

    cfg, factory = impala_learner_factory()
    probe = factory()
    batch = fixed_batch(probe.module, T=6, N=3, seed=0)
    fragments = [{k: v[:, i : i + 1] for k, v in batch.items()} for i in range(3)]
    if padded:
        for f, last in zip(fragments, (6, 2, 4)):
            f[C.VALID] = np.arange(6)[:, None] < last
    reference = LearnerGroup(factory, cfg)
    for rt in open_runtime("process"):
        group = LearnerGroup(factory, cfg.copy().set(num_learners=2), rt, shard_axis=1)
        try:
            reference.set_weights(group.get_weights())  # the ranks' seeded initialisation
            metrics = group.update_fragments(fragments, 1, lr=3e-3)
            weights = group.get_weights()
        finally:
            group.stop()
    ref_metrics = reference.update(stack_fragments(fragments), lr=3e-3)
    np.testing.assert_allclose(weights, reference.get_weights(), rtol=0, atol=1e-6)
    assert metrics["grad_norm"] == pytest.approx(ref_metrics["grad_norm"], rel=1e-5)
    if not padded:  # columns weigh the same: the rank-weighted means are the batch's
        for key in ("policy_loss", "vf_loss", "entropy"):
            assert metrics[key] == pytest.approx(ref_metrics[key], rel=1e-5), key


def test_impala_learners_with_uneven_shards_take_the_same_number_of_sgd_steps():
    # One-column minibatches over shards of 2 and 1 columns: rank 1 has no column for
    # the second step and runs it with weight 0, so neither rank waits on the other.
    # (Were the steps not in lockstep, rank 0 would wait in its second all-reduce until
    # the collective timed out.)
    from tests.algorithms.test_impala import fixed_batch

    cfg, factory = impala_learner_factory()
    cfg = cfg.copy().set(minibatch_size=6, num_epochs=2)
    factory = functools.partial(factory.func, factory.args[0], cfg, "cpu")
    probe = factory()
    batch = fixed_batch(probe.module, T=6, N=3, seed=0)
    fragments = [{k: v[:, i : i + 1] for k, v in batch.items()} for i in range(3)]
    for rt in open_runtime("process"):
        group = LearnerGroup(factory, cfg.copy().set(num_learners=2), rt, shard_axis=1)
        try:
            metrics = group.update_fragments(fragments, 1, lr=3e-3)
            weights = group.get_weights()
        finally:
            group.stop()
    assert np.isfinite(metrics["grad_norm"])
    assert not np.allclose(weights, probe.get_weights())
