"""The policy ``rl export`` writes: an algorithm's only policy, or one policy of a
multi-agent run (``--policy ID``), with the spaces, model and greedy actions the exported
file is checked against.

A multi-agent policy is exported for the agents it plays: its observations are theirs
(in their own observation space, at the policy's own width when the agents of the env
have different spaces) and its actions theirs; the check runs the observations through
the driver's worker routed to that policy, as ``compute_actions({agent: obs})`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from rl.config import ConfigError

__all__ = ["PolicyTarget", "policy_target"]


@dataclass
class PolicyTarget:
    """One policy of ``algo`` and everything its export needs.

    Attributes:
        algo: the algorithm (its name and env go into the sidecar).
        pid: the policy's id (``default_policy`` for a single-agent run).
        agents: the agents it plays (multi-agent), else ``[]``.
        env_obs_space, obs_space, action_space: its spaces (env format, prepared, env).
        model_spec: its model.
        worker: the driver's worker (``compute_actions``' own models and filter).
        index: the policy's index among the worker's policies.
    """

    algo: Any
    pid: str
    agents: list[str]
    env_obs_space: spaces.Space
    obs_space: spaces.Space
    action_space: spaces.Space
    model_spec: Any
    worker: Any
    index: int

    @property
    def module(self):
        return self.worker.policies[self.index].module

    @property
    def mask_columns(self) -> tuple[int, int] | None:
        return self.model_spec.layout.mask if self.model_spec.masked else None

    def compute_actions(self, batch: np.ndarray) -> np.ndarray:
        """Greedy env actions for a batch of flattened observations, as
        ``compute_actions`` gives them for this policy's agents."""
        worker = self.worker
        if worker.agent_policy is None:
            return np.asarray(worker.compute_actions(batch, False))
        width = worker.spec.obs_space.shape[0]
        padded = np.zeros((len(batch), width), np.float32)
        padded[:, : batch.shape[1]] = batch
        position = self.algo.agents.index(self.agents[0])
        actions = worker.compute_actions(padded, False,
                                         positions=np.full(len(batch), position, np.int64))
        return np.stack([np.asarray(a) for a in actions])


def policy_target(algo, policy: str | None = None) -> PolicyTarget:
    """The policy of ``algo`` named ``policy`` (None: the only one).

    Raises:
        ConfigError: ``policy`` is not one of the run's policies, or the run has several
            and none was named.
    """
    ids = algo.policy_map.ids
    if policy is None and len(ids) > 1:
        raise ConfigError(f"the checkpoint holds the policies {list(ids)}; choose the one to "
                          "export with --policy ID (policy=... in Python)")
    pid = ids[0] if policy is None else policy
    if pid not in ids:
        raise ConfigError(f"--policy {pid!r}: the checkpoint's policies are {list(ids)}")
    obs_space, action_space, env_obs_space = algo.policy_spaces(pid)
    return PolicyTarget(algo, pid, algo.policy_map.agents_of(pid), env_obs_space, obs_space,
                        action_space, algo.model_specs[pid], algo._driver_worker(),
                        ids.index(pid))
