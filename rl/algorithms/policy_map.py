"""PolicyMap: which policy acts for which agent, which policies learn, and how each
policy's settings differ from the run's.

A run has one or more policies, each with its own model, optimizer, learner group and
weights board. A single-agent env has exactly one, ``default_policy``; a multi-agent env
(``rl.envs.multi_agent``) has the config's ``policies`` (the ``multi_agent`` section):

* ``policies`` None: one policy shared by every agent (``default_policy``; one per agent
  when the agents have different spaces), or, with a
  ``policy_mapping_fn``, the policies that function names.
* ``policy_mapping_fn`` (``"package.module:function"``, agent id -> policy id), called
  once per agent when the run is built: an agent keeps its policy for the whole run, so
  the (game, agent) slots of the workers' vector env split into fixed per-policy
  columns. Without one, a single policy takes every agent and several policies must be
  named after the agents.
* ``policies_to_train`` None: all learn; the others act with the weights they have and
  never change.
* ``policy_overrides``: policy id -> the settings in ``PER_POLICY_FIELDS`` that differ
  for it (its model and its optimizer's step sizes).

Every check here runs before any process starts; each error says what is valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl.config import AlgorithmConfig, ConfigError, error_line
from rl.imports import import_attr

__all__ = ["DEFAULT_POLICY", "PER_POLICY_FIELDS", "PolicyMap", "resolve_mapping_fn"]

DEFAULT_POLICY = "default_policy"
"""The id of the one policy of a single-agent run, and of a shared multi-agent policy."""

PER_POLICY_FIELDS = ("model_class", "model_kwargs", "model_hiddens", "model_activation",
                     "vf_share_layers", "use_lstm", "lstm_cell_size", "lstm_use_prev_action",
                     "lstm_use_prev_reward", "lr", "entropy_coeff")
"""The config fields ``policy_overrides`` may set for one policy."""

_MULTI_AGENT_FIELDS = ("policies", "policy_mapping_fn", "policies_to_train")


def resolve_mapping_fn(name: str) -> Any:
    """The function a ``policy_mapping_fn`` string (``module:function``) names.

    Raises:
        ConfigError: not ``module:function``, not importable, or not callable.
    """
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"policy_mapping_fn must be 'package.module:function', got {name!r}")
    fn = import_attr(name, "policy_mapping_fn")
    if not callable(fn):
        what = "not found" if fn is None else f"{fn!r} is not callable"
        raise ConfigError(f"policy_mapping_fn {name!r}: {what}")
    return fn


@dataclass(frozen=True)
class PolicyMap:
    """The run's policies and, for a multi-agent env, each agent's.

    Attributes:
        ids: the policy ids, in the order of their boards and learner groups.
        agents: the multi-agent env's agents (``possible_agents``), else None.
        agent_policy: per agent (position in ``agents``), the index of its policy in
            ``ids``; None for a single-agent env.
        trainable: the ids of the policies that learn (a subset of ``ids``, same order).
        overrides: per policy id, the ``PER_POLICY_FIELDS`` settings that differ for it.
    """

    ids: tuple[str, ...]
    agents: tuple[str, ...] | None = None
    agent_policy: tuple[int, ...] | None = None
    trainable: tuple[str, ...] = (DEFAULT_POLICY,)
    overrides: tuple[tuple[str, dict[str, Any]], ...] = ()

    @classmethod
    def create(cls, config: AlgorithmConfig, agents: Sequence[str] | None,
               spaces: Any = None) -> PolicyMap:
        """The policies ``config`` asks for on an env with ``agents`` (None: single-agent);
        ``spaces``: the agents' ``AgentSpaces`` where they differ (then ``policies`` None
        means one policy per agent, and agents that share a policy must share spaces).

        Raises:
            ConfigError: multi-agent settings on a single-agent env, a mapping function
                that fails or names an unknown policy, a policy no agent maps to, a
                ``policies_to_train`` or ``policy_overrides`` entry that is not a policy,
                or an override that is not a per-policy setting or not valid.
        """
        if agents is None:
            given = [n for n in _MULTI_AGENT_FIELDS if getattr(config, n) is not None]
            if config.policy_overrides:
                given.append("policy_overrides")
            if given:
                raise ConfigError(f"{', '.join(given)}: only for multi-agent (PettingZoo) envs; "
                                  f"{config.env!r} is a single-agent env with one policy")
            return cls(ids=(DEFAULT_POLICY,))
        agents = tuple(agents)
        mapped = cls._map(config, agents, spaces is not None)
        ids = tuple(config.policies) if config.policies is not None else \
            tuple(dict.fromkeys(mapped))  # the mapping's policies in agent order
        unknown = {a: p for a, p in zip(agents, mapped) if p not in ids}
        if unknown:
            a, p = next(iter(unknown.items()))
            raise ConfigError(f"policy_mapping_fn maps agent {a!r} to {p!r}, which is not one "
                              f"of the policies {list(ids)}")
        unused = [p for p in ids if p not in mapped]
        if unused:
            raise ConfigError(f"no agent maps to the policies {unused} (agents {list(agents)} "
                              f"map to {dict(zip(agents, mapped))}); remove them or change "
                              "policy_mapping_fn")
        trainable = ids if config.policies_to_train is None else tuple(
            p for p in ids if p in config.policies_to_train)
        stray = [p for p in (config.policies_to_train or ()) if p not in ids]
        if stray:
            raise ConfigError(f"policies_to_train names {stray}, which are not policies; "
                              f"valid: {list(ids)}")
        if spaces is not None:
            for pid in ids:
                ks = [k for k, p in enumerate(mapped) if p == pid]
                other = next((k for k in ks if not spaces.same(ks[0], k)), None)
                if other is not None:
                    raise ConfigError(
                        f"agents {agents[ks[0]]!r} and {agents[other]!r} have different "
                        f"spaces ({spaces.env_obs[ks[0]]}, {spaces.action[ks[0]]} vs "
                        f"{spaces.env_obs[other]}, {spaces.action[other]}) but both map to "
                        f"policy {pid!r}; a policy plays agents of one observation and "
                        "action space (policies=null gives each agent its own)")
        overrides = cls._check_overrides(config, ids)
        return cls(ids=ids, agents=agents, agent_policy=tuple(ids.index(p) for p in mapped),
                   trainable=trainable, overrides=overrides)

    @staticmethod
    def _map(config: AlgorithmConfig, agents: tuple[str, ...], differ: bool) -> list[str]:
        """The policy id of each agent (``differ``: agents have different spaces)."""
        if config.policy_mapping_fn is not None:
            fn = resolve_mapping_fn(config.policy_mapping_fn)
            mapped = []
            for agent in agents:
                try:
                    pid = fn(agent)
                except Exception as e:  # the user's function
                    raise ConfigError(f"policy_mapping_fn {config.policy_mapping_fn!r} raised "
                                      f"for agent {agent!r}: {error_line(e)}") from e
                if not isinstance(pid, str):
                    raise ConfigError(f"policy_mapping_fn {config.policy_mapping_fn!r} must "
                                      f"return a policy id (str); for agent {agent!r} it "
                                      f"returned {pid!r}")
                mapped.append(pid)
            return mapped
        policies = config.policies
        if policies is None:
            return list(agents) if differ else [DEFAULT_POLICY] * len(agents)
        if len(policies) == 1:
            return [policies[0]] * len(agents)
        if set(policies) <= set(agents):
            return list(agents)
        raise ConfigError(f"policies {list(policies)} are not all agent ids of {config.env!r} "
                          f"({list(agents)}): set policy_mapping_fn ('package.module:function', "
                          "agent id -> policy id) to say which agent each one plays")

    @staticmethod
    def _check_overrides(config: AlgorithmConfig, ids: tuple[str, ...]):
        """``policy_overrides`` as ``overrides``, each policy's config checked as the run's
        is: every value by its field (the run-level error, prefixed with the policy), then
        ``validate()`` on the merged config (the rules between fields)."""
        out = []
        for pid, settings in config.policy_overrides.items():
            if pid not in ids:
                raise ConfigError(f"policy_overrides names {pid!r}, which is not a policy; "
                                  f"valid: {list(ids)}")
            bad = [k for k in settings if k not in PER_POLICY_FIELDS]
            if bad:
                raise ConfigError(f"policy_overrides[{pid!r}]: {bad} cannot differ per policy; "
                                  f"per-policy settings: {list(PER_POLICY_FIELDS)}")
            try:
                merged = config.copy().set(**settings)
            except ConfigError as e:  # a value the run-level field rejects too
                raise ConfigError(f"policy_overrides[{pid!r}]: {e}") from None
            try:  # the rules between fields, on the policy's own config
                merged.validate()
            except ConfigError as e:
                raise ConfigError(f"policy {pid!r} (the run's config with policy_overrides"
                                  f"[{pid!r}] = {settings}): {e}") from None
            out.append((pid, dict(settings)))
        return tuple(out)

    # ------------------------------------------------------------------ queries
    @property
    def multi_agent(self) -> bool:
        return self.agents is not None

    def config_for(self, config: AlgorithmConfig, pid: str) -> AlgorithmConfig:
        """``config`` with policy ``pid``'s overrides applied (``config`` itself if none)."""
        settings = dict(self.overrides).get(pid)
        return config if not settings else config.copy().set(**settings)

    def positions(self, index: int) -> list[int]:
        """The agent positions (in ``agents``) that policy ``ids[index]`` plays."""
        assert self.agent_policy is not None
        return [k for k, p in enumerate(self.agent_policy) if p == index]

    def agents_of(self, pid: str) -> list[str]:
        """The agents policy ``pid`` plays (every agent of a single-agent run: none)."""
        if self.agents is None:
            return []
        return [self.agents[k] for k in self.positions(self.ids.index(pid))]

    def slots(self, index: int, num_games: int) -> np.ndarray:
        """The slots (``game * num_agents + position``) of policy ``ids[index]`` in a
        ``MultiAgentVectorEnv`` of ``num_games`` games, in slot order."""
        assert self.agents is not None
        pos = np.asarray(self.positions(index), np.int64)
        games = np.arange(num_games, dtype=np.int64)[:, None] * len(self.agents)
        return (games + pos[None, :]).reshape(-1)
