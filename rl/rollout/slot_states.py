"""SlotStates: the model states of several policies, some recurrent, over a worker's slots.

With one policy (shared by every agent, or a single-agent run) the worker's recurrent
policy holds a state per slot itself. With several policies each recurrent one plays
only its own (game, agent) slots, so ``SlotStates`` keeps every slot's state in one
place, in the layout of the fragment's ``state_in_<k>`` columns (each of the
policies' model states zero-padded to the widest; a feed-forward policy's slots hold
zeros), plus each recurrent policy's own previous action and reward per slot::

    worker.sample ── lanes: policy k acts on its slots' rows ──▶ SlotPolicy k
                                                                  │ view(k, its slots)
                          SlotStates.state [N, ...] ◀── write ────┘ (advanced state)

``SlotPolicy`` wraps a policy's ``RecurrentActorCriticPolicy`` so that
``PolicyLanes`` calls it as any policy: before each call it gets its slots' states
(cropped to its own shapes), afterwards the advanced states go back. Its slots are
those of the env the states are bound to (``bind``: the worker's, or an evaluation's
own vector env). ``observe``, ``reset_state``, ``reset_states`` and ``env_state`` act
per slot on the policy that plays it, as the single policy's methods do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rl.data import columns as C
from rl.lazy_torch import torch  # feed-forward workers never import it

__all__ = ["SlotPolicy", "SlotStates"]


def _crop(shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, d) for d in shape)


class SlotStates:
    """Every slot's model state for ``policies`` (see the module docstring).

    Args:
        policies: the worker's inference policies, in policy order; the recurrent ones
            (with a ``num_model_states``) are replaced by their ``SlotPolicy`` here.
        agent_policy: per agent position, the index of its policy.
        num_slots: the worker's slots (games x agents).
    """

    def __init__(self, policies: list[Any], agent_policy: np.ndarray, num_slots: int):
        self.agent_policy = np.asarray(agent_policy, np.int64)
        self.num_agents = len(self.agent_policy)
        self.recurrent = [k for k, p in enumerate(policies) if hasattr(p, "num_model_states")]
        self.inner = {k: policies[k] for k in self.recurrent}
        self.num_model_states = max(self.inner[k].num_model_states for k in self.recurrent)
        shapes: list[tuple[int, ...]] = []
        for j in range(self.num_model_states):
            own = [self.inner[k].state_shapes()[j] for k in self.recurrent
                   if j < self.inner[k].num_model_states]
            if len({len(s) for s in own}) > 1:
                raise ValueError(f"the recurrent policies' model state {j} has shapes {own} "
                                 "of different ranks; they cannot share a fragment column")
            shapes.append(tuple(int(d) for d in np.max(np.asarray(own), axis=0)))
        self._shapes = shapes
        for k in self.recurrent:
            policies[k] = SlotPolicy(self, k)
        self.bind(num_slots)

    # ------------------------------------------------------------------ binding
    def bind(self, num_slots: int) -> tuple[Any, ...]:
        """Fresh initial states for an env of ``num_slots`` slots; returns what was
        bound before (for ``restore``)."""
        before = getattr(self, "_bound", None)
        self.num_slots = num_slots
        owner = self.agent_policy[np.arange(num_slots) % self.num_agents]
        self.rows = {k: np.flatnonzero(owner == k) for k in self.recurrent}
        self.owner = owner
        self.state = [np.zeros((num_slots, *s), np.float32) for s in self._shapes]
        self.extra = {k: [np.zeros((num_slots, *init.shape), np.float32) for init in
                          self.inner[k].initial[self.inner[k].num_model_states:]]
                      for k in self.recurrent}
        self.reset_states(np.ones(num_slots, np.bool_))
        self._bound = (num_slots, self.rows, self.owner, self.state, self.extra)
        return before

    def restore(self, bound: tuple[Any, ...]) -> None:
        """Go back to what ``bind`` returned."""
        self.num_slots, self.rows, self.owner, self.state, self.extra = bound
        self._bound = bound

    # ------------------------------------------------------------------ per policy
    def view(self, k: int, rows: np.ndarray) -> list[np.ndarray]:
        """Policy ``k``'s state at ``rows`` (slots), in its own layout."""
        inner = self.inner[k]
        own = [np.ascontiguousarray(self.state[j][(rows, *_crop(shape))])
               for j, shape in enumerate(inner.state_shapes())]
        return own + [e[rows].copy() for e in self.extra[k]]

    def write(self, k: int, rows: np.ndarray, state: Sequence[np.ndarray]) -> None:
        """Store policy ``k``'s ``state`` (own layout) for ``rows``."""
        inner = self.inner[k]
        for j, shape in enumerate(inner.state_shapes()):
            self.state[j][(rows, *_crop(shape))] = state[j]
        for e, s in zip(self.extra[k], state[inner.num_model_states:]):
            e[rows] = s

    # ------------------------------------------------------------------ per slot
    def state_shapes(self) -> list[tuple[int, ...]]:
        """The fragment's ``state_in_<k>`` shapes (the widest policy's)."""
        return list(self._shapes)

    def observe(self, rewards: np.ndarray) -> None:
        """The env's rewards ``[N]``: the next step's previous rewards, for a policy
        whose model reads them."""
        for k in self.recurrent:
            if C.PREV_REWARDS in self.inner[k].prev_inputs:
                self.extra[k][-1][:] = rewards

    def reset_states(self, where: np.ndarray) -> None:
        """The slots flagged in ``where`` hold their policy's initial state (zeros for
        a feed-forward policy's)."""
        for j in range(self.num_model_states):
            self.state[j][where] = 0.0
        for k in self.recurrent:
            rows = self.rows[k][where[self.rows[k]]]
            if len(rows):
                inner = self.inner[k]
                self.write(k, rows, [np.broadcast_to(s, (len(rows), *s.shape))
                                     for s in inner.initial])

    def reset_state(self, i: int) -> None:
        """Slot ``i`` starts an episode."""
        where = np.zeros(self.num_slots, np.bool_)
        where[i] = True
        self.reset_states(where)

    def env_state(self, i: int) -> list[np.ndarray]:
        """A copy of slot ``i``'s state, in its policy's layout ([] if feed-forward)."""
        k = int(self.owner[i])
        if k not in self.inner:
            return []
        return [s[0] for s in self.view(k, np.array([i]))]

    def final_values(self, policies: list[Any], obs: np.ndarray, slots: np.ndarray,
                     states: list[list[np.ndarray]]) -> np.ndarray:
        """V(final obs) of ended episodes: ``obs[m]`` of slot ``slots[m]``, from the
        state ``states[m]`` it ended with (``env_state``)."""
        out = np.zeros(len(obs), np.float32)
        owner = self.owner[slots]
        for k, policy in enumerate(policies):
            rows = np.flatnonzero(owner == k)
            if not len(rows):
                continue
            x = torch.from_numpy(np.ascontiguousarray(obs[rows]))
            if k in self.inner:
                stacked = [np.stack(parts) for parts in zip(*(states[m] for m in rows))]
                out[rows] = self.inner[k].value(x, stacked)
            else:
                out[rows] = policy.value(x)
        return out


class SlotPolicy:
    """A recurrent policy acting on its slots' rows of ``SlotStates`` (what
    ``PolicyLanes`` hands it are exactly those rows, in slot order)."""

    def __init__(self, slots: SlotStates, k: int):
        self.slots = slots
        self.k = k
        self.inner = slots.inner[k]

    def load_weights(self, vector: np.ndarray) -> None:
        self.inner.load_weights(vector)

    def columns(self) -> dict[str, tuple[tuple[int, ...], type]]:
        return self.inner.columns()

    def _run(self, method: str, *args: Any, advance: bool = True):
        rows = self.slots.rows[self.k]
        self.inner.state = self.slots.view(self.k, rows)
        out = getattr(self.inner, method)(*args)
        if advance:
            self.slots.write(self.k, rows, self.inner.state)
        return out

    def act(self, obs: torch.Tensor, generator: torch.Generator, request: dict):
        return self._run("act", obs, generator, request)

    def greedy(self, obs: torch.Tensor) -> np.ndarray:
        return self._run("greedy", obs)

    def value(self, obs: torch.Tensor) -> np.ndarray:
        return self._run("value", obs, advance=False)
