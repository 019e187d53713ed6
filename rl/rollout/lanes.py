"""PolicyLanes: a worker's policies and which rows each one acts for.

A single-agent run, or a multi-agent run with one shared policy, has one policy that
acts for every row (``lanes`` None). A multi-agent run with several policies
(``WorkerSpec.models``, ``WorkerSpec.agent_policy``) splits a batch of slot rows into
*lanes*, the rows of each policy (a slot's policy follows from its agent position), and
each policy acts in one forward pass on its lane; the results are gathered back into
row order. Where the agents have different spaces, observations, actions and the
policies' columns travel zero-padded to the widest: each policy reads its own width of
the observations, writes its own width of the columns and turns its actions into env
actions with its own action space.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.data import columns as C
from rl.policies.model_spec import ModelSpec
from rl.rollout.policy import build_inference_policy

__all__ = ["PolicyLanes"]


class PolicyLanes:
    """The inference policies of ``models`` for ``num_slots`` rows.

    Args:
        models: every policy's model (one for a single policy).
        num_slots: rows a step acts on (sub-envs, or (game, agent) slots).
        agent_policy: per agent position, the index of its policy (several policies).
        num_agents: agents per game (multi-agent), else None.
    """

    def __init__(self, models: tuple[ModelSpec, ...], num_slots: int,
                 agent_policy: tuple[int, ...] | None, num_agents: int | None):
        self.policies = [build_inference_policy(m, num_slots) for m in models]
        self.num_agents = num_agents
        self.agent_policy = None if len(models) == 1 else np.asarray(agent_policy, np.int64)
        # A recurrent policy's previous action and reward columns are its own (zeros in
        # the other policies' rows); the others every policy records.
        if self.agent_policy is not None and len({
                tuple(c for c in p.columns() if c not in (C.PREV_ACTIONS, C.PREV_REWARDS))
                for p in self.policies}) > 1:
            raise ValueError("the policies of a multi-agent run must record the same columns")
        self.dist_specs = [m.dist_spec for m in models]
        self.obs_widths = [int(np.prod(m.obs_space.shape)) for m in models]
        self.columns = _widest([p.columns() for p in self.policies])
        self.action_shape = self.dist_specs[0].action_shape
        if self.action_shape:
            self.action_shape = (max(d.action_shape[0] for d in self.dist_specs),)
        self.padded = len(models) > 1 and (
            len(set(self.obs_widths)) > 1
            or any(m.action_space != models[0].action_space for m in models))

    def of(self, slots: np.ndarray) -> list[np.ndarray] | None:
        """Rows of each policy for rows played by ``slots`` (None: one policy, all rows)."""
        if self.agent_policy is None:
            return None
        policy = self.agent_policy[slots % self.num_agents]
        return [np.flatnonzero(policy == p) for p in range(len(self.policies))]

    def act(self, obs: np.ndarray, lanes: list[np.ndarray] | None,
            generator, request: dict) -> dict[str, np.ndarray]:
        """Each policy's ``act`` on its rows of ``obs``, gathered into one dict of columns."""
        if lanes is None:
            return self.policies[0].act(self.input(0, obs), generator, request)
        out: dict[str, np.ndarray] = {}
        for k, (policy, rows) in enumerate(zip(self.policies, lanes)):
            if not len(rows):
                continue
            part = policy.act(self.input(k, self.own(obs, rows, k)), generator, request)
            for name, value in part.items():
                if name not in out:
                    shape = self.action_shape if name == C.ACTIONS else \
                        self.columns[name][0] if name in self.columns else value.shape[1:]
                    out[name] = np.zeros((len(obs), *shape), value.dtype)
                _put(out[name], rows, value)
        return out

    @property
    def numpy_sampling(self) -> bool:
        """Whether every policy runs in numpy: the worker then samples with a numpy
        ``Generator`` and never imports torch."""
        return all(getattr(p, "numpy_sampling", False) for p in self.policies)

    def input(self, k: int, obs: np.ndarray):
        """Observations as policy ``k`` takes them: numpy, or a tensor for a policy
        without ``numpy_sampling`` (the recurrent one)."""
        if hasattr(self.policies[k], "numpy_sampling"):
            return obs
        import torch

        return torch.from_numpy(obs)

    def own(self, obs: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
        """Policy ``k``'s rows of a (padded) observation batch, at its own width."""
        part = obs[rows]
        if self.padded and part.ndim == 2 and part.shape[1] > self.obs_widths[k]:
            part = np.ascontiguousarray(part[:, : self.obs_widths[k]])
        return part

    def env_actions(self, actions: np.ndarray, lanes: list[np.ndarray] | None):
        """The env's actions for a batch of policy actions (each policy's own bounds and
        width with agents of different spaces: then a list, one action per row)."""
        if lanes is None or not self.padded:
            return self.dist_specs[0].env_actions(actions)
        out: list[Any] = [None] * len(actions)
        for k, rows in enumerate(lanes):
            if not len(rows):
                continue
            own = actions[rows]
            if own.ndim == 2:
                own = own[:, : self.dist_specs[k].action_shape[0]]
            for r, a in zip(rows, self.dist_specs[k].env_actions(own)):
                out[r] = a
        return out

    def rows(self, method: str, obs: np.ndarray, lanes: list[np.ndarray] | None) -> np.ndarray:
        """Each policy's ``greedy`` or ``value`` on its rows of ``obs``, in row order."""
        if lanes is None:
            return getattr(self.policies[0], method)(self.input(0, obs))
        out = None
        for k, (policy, rows) in enumerate(zip(self.policies, lanes)):
            if not len(rows):
                continue
            part = np.asarray(getattr(policy, method)(self.input(k, self.own(obs, rows, k))))
            if out is None:
                shape = self.action_shape if method == "greedy" else part.shape[1:]
                out = np.zeros((len(obs), *shape), part.dtype)
            _put(out, rows, part)
        return out


def _widest(columns: list[dict[str, tuple[tuple[int, ...], Any]]]):
    """The policies' columns, each as wide as the widest policy's (``[k]`` columns)."""
    out = dict(columns[0])
    for cols in columns[1:]:
        for name, (shape, dtype) in cols.items():
            if name not in out or shape and shape[0] > out[name][0][0]:
                out[name] = (shape, dtype)
    return out


def _put(out: np.ndarray, rows: np.ndarray, value: np.ndarray) -> None:
    """``out[rows] = value``, ``value`` zero-padded where it is narrower than ``out``."""
    if value.ndim == 2 and value.shape[1] < out.shape[1]:
        out[rows, : value.shape[1]] = value
        out[rows, value.shape[1]:] = 0
    else:
        out[rows] = value
