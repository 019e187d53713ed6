"""WorkerSet state: worker states are saved and restored only where episodes replay."""

import pytest

from rl.rollout import WorkerSet
from rl.runtime.inline import InlineRuntime
from tests.rollout.test_worker import _spec


@pytest.mark.parametrize("exact_resume,seed,replays", [
    (True, 0, True), (False, 0, False), (True, None, False)])
def test_worker_states_travel_only_when_the_workers_record_their_games(
        exact_resume, seed, replays):
    spec = _spec("scripted-set", num_envs=2, T=5, seed=seed)
    spec.exact_resume = exact_resume
    saved = WorkerSet(InlineRuntime(), spec, 0, None)
    try:
        saved.sample()
        counters, states = saved.get_state()
    finally:
        saved.stop()
    assert sorted(states) == (["worker_0"] if replays else [])
    restored = WorkerSet(InlineRuntime(), spec, 0, None)
    try:
        assert restored.set_state(counters, states) == ([0] if replays else [])
        assert restored.call_one(0, "get_state")["resets"].tolist() == \
            (states["worker_0"]["resets"].tolist() if replays else [1, 1])
    finally:
        restored.stop()
