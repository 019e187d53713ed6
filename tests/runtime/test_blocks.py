"""Reusable fragment blocks (``rl.runtime.blocks``): the hand-back protocol in one
process, then process-backend workers that sample into their blocks: reuse, no block
overwritten while held, the same numbers as the plain path, cleanup after a SIGKILL and
after stop."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from rl.data import columns as C
from rl.rollout import WorkerSet
from rl.runtime import shm
from rl.runtime.blocks import RING_SIZE, BlockHandle, BlockRing, layout_of
from rl.runtime.inline import InlineRuntime
from rl.runtime.shared import ShmShared
from tests.rollout.test_worker import _spec

PREFIX = f"rl_{os.getpid()}_blocktest_"


@pytest.fixture
def ring():
    ring = BlockRing(PREFIX, size=2)
    yield ring
    ring.close()
    assert shm.list_segments(PREFIX) == []


def _layout():
    return layout_of({"x": np.zeros((4, 3), np.float32), "d": np.zeros(5, np.bool_)})


def test_a_block_is_reused_only_after_its_handle_is_released(ring):
    first, views = ring.acquire(*_layout())
    views["x"][:] = 7.0
    second, _ = ring.acquire(*_layout())
    assert second.name != first.name
    assert ring.acquire(*_layout()) is None  # both held: the worker takes fresh arrays
    np.testing.assert_array_equal(first.resolve()["x"], np.full((4, 3), 7.0, np.float32))
    assert not first.resolve()["x"].flags.writeable
    first.release()
    again, _ = ring.acquire(*_layout())
    assert (again.name, again.generation) == (first.name, first.generation + 1)
    assert ring.names() == [first.name, second.name]  # no new segment


def test_stale_handles_neither_resolve_nor_free_the_block(ring):
    first, _ = ring.acquire(*_layout())
    first.release()
    first.release()  # idempotent
    reused, _ = ring.acquire(*_layout())
    with pytest.raises(RuntimeError, match="handed back"):
        first.resolve()
    first.release()  # an older generation: the block stays held for `reused`
    other, _ = ring.acquire(*_layout())
    assert other.name != reused.name
    assert ring.acquire(*_layout()) is None


def test_a_ring_keeps_its_layout(ring):
    ring.acquire(*_layout())
    assert ring.acquire(*layout_of({"x": np.zeros(9, np.int64)})) is None


def test_a_handle_is_small_and_pickles():
    import pickle

    ring = BlockRing(PREFIX, size=1)
    try:
        handle, _ = ring.acquire(*layout_of({C.OBS: np.zeros((128, 8, 84, 84, 4), np.uint8)}))
        assert len(pickle.dumps(handle)) < 500
        assert pickle.loads(pickle.dumps(handle)) == handle
    finally:
        ring.close()


# ---------------------------------------------------------------- process-backend workers

BIG = {"num_envs": 16, "T": 600}  # about 0.5 MB per fragment: above SHM_THRESHOLD


def _segments(runtime) -> list[str]:
    return sorted(shm.list_segments(runtime.prefix))


def test_workers_sample_into_the_same_blocks_every_call(process_runtime):
    workers = WorkerSet(process_runtime, _spec("blocks-reuse", seed=1, **BIG), 2, None)
    try:
        first = workers.sample()
        assert all("block" not in r for r in first)  # the first one gives the layout
        workers.release_blocks(first)
        seen = []
        for _ in range(8):
            results = workers.sample()
            assert all(isinstance(r["block"], BlockHandle) for r in results)
            seen.append(_segments(process_runtime))
            workers.release_blocks(results)
        assert all(names == seen[0] for names in seen) and len(seen[0]) == 2
    finally:
        workers.stop()


def test_fragments_in_blocks_equal_the_plain_path(process_runtime):
    spec = _spec("blocks-equal", seed=5, **BIG)
    plain = WorkerSet(InlineRuntime(), spec, 0, None)
    blocks = WorkerSet(process_runtime, spec, 1, None)
    try:
        for _ in range(4):
            [a], [b] = plain.sample(), blocks.sample()
            assert a["batch"].keys() == b["batch"].keys()
            for name, values in a["batch"].items():
                np.testing.assert_array_equal(values, b["batch"][name], err_msg=name)
            np.testing.assert_array_equal(a["episode_returns"], b["episode_returns"])
            blocks.release_blocks([b])
    finally:
        plain.stop()
        blocks.stop()


def test_a_held_block_is_never_overwritten(process_runtime):
    workers = WorkerSet(process_runtime, _spec("blocks-held", seed=2, **BIG), 1, None)
    try:
        workers.sample()  # the layout
        [held] = workers.sample()
        kept = {k: v.copy() for k, v in held["batch"].items()}
        names = set()
        for _ in range(2 * RING_SIZE):
            [r] = workers.sample()
            if "block" in r:
                assert r["block"].name != held["block"].name
                names.add(r["block"].name)
            workers.release_blocks([r])
        for name, values in kept.items():
            np.testing.assert_array_equal(held["batch"][name], values, err_msg=name)
        assert len(names) == 1  # one more block, handed back and reused each time
        workers.release_blocks([held])
        for _ in range(RING_SIZE):
            [r] = workers.sample()
            names.add(r["block"].name)
            workers.release_blocks([r])
        assert held["block"].name in names  # handed back, so in use again
    finally:
        workers.stop()


def test_every_block_held_falls_back_to_fresh_arrays(process_runtime):
    workers = WorkerSet(process_runtime, _spec("blocks-full", seed=2, **BIG), 1, None)
    try:
        workers.sample()
        held = [workers.sample()[0] for _ in range(RING_SIZE)]
        [extra] = workers.sample()
        assert "block" not in extra and extra["batch"][C.OBS].shape[:2] == (600, 16)
        assert len(_segments(process_runtime)) == RING_SIZE
        workers.release_blocks(held)
    finally:
        workers.stop()


def test_shared_batches_keep_their_own_segments(process_runtime):
    workers = WorkerSet(process_runtime, _spec("blocks-shared", seed=2, **BIG), 1, None)
    try:
        workers.sample()
        [r] = workers.sample(share_batch=True)
        assert isinstance(r["batch"], ShmShared) and "block" not in r
        r["batch"].release()
    finally:
        workers.stop()


def test_a_sigkilled_worker_leaves_no_block_and_held_views_stay_readable(process_runtime):
    workers = WorkerSet(process_runtime, _spec("blocks-kill", seed=2, **BIG), 1, None)
    try:
        workers.sample()
        [held] = workers.sample()
        kept = held["batch"][C.OBS].copy()
        dead = workers.workers[0].pid
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(f"_{dead}_" in n for n in _segments(process_runtime)):
            assert time.monotonic() < deadline, _segments(process_runtime)
            workers.sample()  # notices the death, sweeps and replaces the worker
            time.sleep(0.05)
        np.testing.assert_array_equal(held["batch"][C.OBS], kept)
        workers.release_blocks([held])  # a dead worker's block: nothing to hand back
        for _ in range(3):
            results = workers.sample()
            workers.release_blocks(results)
        assert results[0]["worker_index"] == 0 and workers.workers[0].pid != dead
    finally:
        workers.stop()
    process_runtime.shutdown()
    assert _segments(process_runtime) == []


# ---------------------------------------------------------------- algorithms hand blocks back


def _generations() -> dict[str, int]:
    """The driver's mapped blocks and the generation each holds now."""
    from rl.runtime import blocks

    return {name: int(block.header[0]) for name, block in blocks._MAPPED.items()}


@pytest.mark.parametrize("algo", ["PPO", "IMPALA", "DQN", "PPO-two-lstm-policies"])
def test_training_hands_every_block_back(algo):
    from rl import DQNConfig, IMPALAConfig, PPOConfig

    if algo == "PPO-two-lstm-policies":  # multi-agent slots, recurrent state columns
        from tests.test_multi_agent import matching

        config = matching(0).training(use_lstm=True, lstm_cell_size=16, max_seq_len=8) \
            .multi_agent(policies=["agent_0", "agent_1"])
    else:
        config = {"PPO": PPOConfig, "IMPALA": IMPALAConfig, "DQN": DQNConfig}[algo]() \
            .environment("CartPole-v1")
    config = (config.resources(backend="process")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=16,
                           rollout_fragment_length=128)  # about 100 KiB per fragment
              .training(model_hiddens=[16]).debugging(seed=0))
    if algo == "DQN":
        config = config.training(train_batch_size=32, training_intensity=0.01).set(
            min_sample_timesteps_per_iteration=2048)
    else:
        config = config.training(train_batch_size=2048, minibatch_size=512, num_epochs=1)
    trainer = config.build()
    try:
        before = set(_generations())
        for _ in range(8):
            trainer.train()
        mine = {n: g for n, g in _generations().items() if n not in before}
        # Blocks never handed back would each hold generation 1 (taken once).
        assert mine and len(mine) <= RING_SIZE
        assert sum(mine.values()) >= 6 > len(mine)
    finally:
        trainer.stop()
