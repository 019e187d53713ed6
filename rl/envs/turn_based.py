"""Turn-based multi-agent envs: PettingZoo AEC games driven turn by turn.

A PettingZoo AEC env that ``aec_to_parallel`` cannot convert (``metadata
["is_parallelizable"]`` unset: the classic board and card games) lets one agent act at
a time, ``agent_selection``. ``TurnBasedVectorEnv`` steps ``num_games`` of them with the
slots of ``MultiAgentVectorEnv`` (slot ``g * A + k`` is agent ``possible_agents[k]`` of
game ``g``): in each vector step exactly one slot of every game is *active*, the agent
whose turn it is, and the worker's action for it is played.

**Resolution.** An agent's move is rewarded by what happens until its next turn (the
other agents' moves included): PettingZoo accumulates that reward and hands it over,
with the agent's termination or truncation, when the agent is selected again
(``last()``). So a move's transition is complete only then: the step that reaches the
agent's next turn, or its final dead step at the game's end, *resolves* the move, and
``resolved`` flags those slots with the move's reward, termination and truncation in
the step's ``StepResult`` (and the final observation in ``final_obs`` where the agent is
done). A move can be resolved in the step that played it (the move that ends the game).
The worker writes a fragment row per resolved move (``rl.rollout.turn_based``), so each
slot's rows are that agent's own trajectory, turn after turn.

Every agent's dead step (``step(None)``) is played here, as the AEC API requires. A game
ends when no agent is left; its episode (return summed over agents, length in moves) is
reported and the game is reset. Agents that have not moved yet have nothing to resolve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.envs.multi_agent import MultiAgentVectorEnv
from rl.envs.vector import StepResult

__all__ = ["TurnBasedVectorEnv", "is_turn_based"]


def is_turn_based(env: Any) -> bool:
    """Whether ``env`` is a PettingZoo AEC env (``agent_iter``, ``last``,
    ``agent_selection``), which rl drives turn by turn."""
    return callable(getattr(env, "agent_iter", None)) and callable(getattr(env, "last", None)) \
        and hasattr(env, "possible_agents")


class TurnBasedVectorEnv(MultiAgentVectorEnv):
    """``num_games`` AEC games as ``MultiAgentVectorEnv`` slots, one move per game per step.

    Attributes (beyond ``MultiAgentVectorEnv``'s):
        resolved: bool ``[num_slots]``, the slots whose last move the latest ``step``
            resolved (its ``rewards``, ``terminateds``, ``truncateds`` are theirs).
        turn_based: True (the worker's loop keys on it).
    """

    turn_based = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.resolved = np.zeros(self.num_envs, np.bool_)
        self._moved = np.zeros(self.num_envs, np.bool_)  # a move awaits its resolution

    # ------------------------------------------------------------------ resets
    def _reset(self, g: int) -> None:
        self._reset_game(g)  # an AEC reset returns nothing: the first mover's obs is last()'s
        A, base = self.num_agents, g * self.num_agents
        self._moved[base : base + A] = False
        self.active[base : base + A] = False
        self.obs[base : base + A] = 0
        if self.hooks is not None:
            self.hooks.start(g)
        self._advance(g, None)

    def _advance(self, g: int, result: StepResult | None) -> bool:
        """Walk game ``g`` to the next agent that must choose a move, resolving every
        agent reached that has a move outstanding (and playing the dead steps of agents
        that are done). Returns False when the game is over (no agent left)."""
        env, base = self.envs[g], g * self.num_agents
        while env.agents:
            agent = env.agent_selection
            obs, reward, term, trunc, _ = env.last()
            s = base + self.slot_of[agent]
            self._ep_return[g] += float(reward)
            if result is not None and self._moved[s]:
                self._moved[s] = False
                self.resolved[s] = True
                self._rewards[s] = float(reward)
                self._terms[s] = bool(term)
                self._truncs[s] = bool(trunc) and not term
                if term or trunc:
                    result.final_obs[s] = np.asarray(self._flat(obs, s - base), self.obs.dtype)
            if term or trunc:
                env.step(None)
                continue
            self.obs[s] = self._flat(obs, s - base)
            self.active[base : base + self.num_agents] = False
            self.active[s] = True
            return True
        return False

    # ------------------------------------------------------------------ stepping
    def step(self, actions: np.ndarray) -> StepResult:
        """Play the active slot's action in every game; resolve the moves this completes;
        reset finished games."""
        result = StepResult(self.obs, self._rewards, self._terms, self._truncs)
        A = self.num_agents
        self._rewards[:] = 0.0
        self._terms[:] = False
        self._truncs[:] = False
        self.resolved[:] = False
        for g, env in enumerate(self.envs):
            base = g * A
            (acting,) = np.flatnonzero(self.active[base : base + A])
            s = base + acting
            action = actions[s]
            try:
                env.step(action.item() if np.ndim(action) == 0 else np.asarray(action))
                self._moved[s] = True
                self._ep_len[g] += 1
                alive = self._advance(g, result)
            except Exception as exc:
                if not self.restart_failed:
                    raise
                self._fail_game(g, exc, result)
                continue
            if self.hooks is not None and self.hooks.on_step is not None:
                self.hooks.on_step(g, self._ep_return[g], self._ep_len[g], {})
            if alive:
                continue
            result.episodes.append((float(self._ep_return[g]), int(self._ep_len[g])))
            result.ended.append(g)
            if self.hooks is not None:
                self.hooks.end(g, self._ep_return[g], self._ep_len[g], {})
            self._reset_or_recreate(g)
        return result

    def _fail_game(self, g: int, exc: Exception, result: StepResult) -> None:
        """Game ``g`` raised: every outstanding move ends as a truncation at its agent's
        last observation; the game is recreated and reset (its episode is not reported)."""
        base = g * self.num_agents
        for s in range(base, base + self.num_agents):
            if self._moved[s]:
                self._moved[s] = False
                self.resolved[s] = True
                self._truncs[s] = True
                result.final_obs[s] = self.obs[s].copy()
            result.failed.append(s)
        self._recreate(g, exc, "step")
        self._reset(g)
