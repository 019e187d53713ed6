"""What each backend says it can do (``rl.runtime.capabilities``), before and after it
starts (Ray's instance in ``test_ray.py``), and the config checks that ask those questions instead of a backend's name."""

from __future__ import annotations

import dataclasses

import pytest

from rl.algorithms.ppo import PPOConfig
from rl.config import ConfigError
from rl.runtime import BACKENDS, Capabilities, capabilities, make_runtime


def test_each_backend_reports_what_it_can_do():
    inline, process, ray = (capabilities(b) for b in ("inline", "process", "ray"))
    # inline: actors are the driver's own objects, one process, one rank
    assert inline.actors_in_driver and inline.max_learner_ranks == 1
    assert not inline.is_cluster and not inline.schedules_gpus
    # process: local processes, no scheduler of GPUs
    assert not process.actors_in_driver and process.max_learner_ranks is None
    assert not process.is_cluster and not process.schedules_gpus
    # ray: Ray's scheduler places GPUs; a cluster only when joining one
    assert not ray.actors_in_driver and ray.max_learner_ranks is None
    assert ray.schedules_gpus and not ray.is_cluster
    assert capabilities("ray", address="auto").is_cluster
    # an address means nothing to the local backends
    assert capabilities("process", address="auto") == process
    assert capabilities("inline", address="auto") == inline


def test_capabilities_are_frozen_and_check_learner_ranks():
    caps = capabilities("inline")
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.max_learner_ranks = 4  # type: ignore[misc]  # the point of the test
    assert caps.hosts_learner_ranks(1) and not caps.hosts_learner_ranks(2)
    assert capabilities("process").hosts_learner_ranks(64)
    assert Capabilities(False, 3, False, False).hosts_learner_ranks(3)


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid backends: process, inline, ray"):
        capabilities("threads")
    assert set(BACKENDS) == {"process", "inline", "ray"}


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_runtime_reports_its_backends_capabilities(backend):
    rt = make_runtime(backend, address="ignored-by-local-backends")
    try:
        assert rt.capabilities == capabilities(backend)
    finally:
        rt.shutdown()


def test_too_many_learner_ranks_fail_in_config_with_the_same_message():
    cfg = (PPOConfig().environment("CartPole-v1").resources(backend="inline")
           .learners(num_learners=2))
    with pytest.raises(ConfigError) as err:
        cfg.build()
    assert str(err.value) == (
        "num_learners=2 needs backend=process or ray: the inline backend runs learners in "
        "the driver process, which can hold only one torch.distributed rank; use "
        "num_learners 0 or 1 with inline")
