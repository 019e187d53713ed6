"""Multi-agent runs of several policies where some are recurrent: the checks and the
per-policy view of a fragment's recurrent columns.

A worker records one set of ``state_in_<k>`` columns for all its (game, agent) slots,
each the widest of the recurrent policies' model states (``rl.rollout.slot_states``),
and each recurrent policy's previous action / reward columns (zeros in the other
policies' slots). ``policy_recurrent_columns`` cuts a policy's slot columns back to its
own layout: its own state shapes for a recurrent policy, no recurrent columns at all for
a feed-forward one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.config import ConfigError
from rl.data import columns as C
from rl.lazy_torch import torch
from rl.policies import ModelSpec

__all__ = ["check_recurrent_policies", "initial_state", "policy_recurrent_columns"]

_PREV = (C.PREV_ACTIONS, C.PREV_REWARDS)


def check_recurrent_policies(algo: str, env: str, model_specs: dict[str, ModelSpec],
                             turn_based: bool, supported: bool) -> None:
    """``ConfigError`` where a multi-agent run has a recurrent policy it cannot train.

    Args:
        algo: the algorithm's name.
        env: the env id.
        model_specs: every policy's model.
        turn_based: a turn-based (AEC) game.
        supported: the algorithm trains recurrent multi-agent policies (PPO).
    """
    recurrent = [pid for pid, spec in model_specs.items() if spec.recurrent]
    if not recurrent:
        return
    what = None if supported else f"{algo} (use PPO)"
    if supported and turn_based:
        what = "turn-based games"
    if what is not None:
        raise ConfigError(f"recurrent multi-agent policies (use_lstm, or a model with "
                          f"initial_state: {recurrent}) are supported on Parallel envs with "
                          f"PPO; not yet with {what}: train {env!r} with feed-forward "
                          "policies")


def initial_state(spec: ModelSpec) -> list[np.ndarray] | None:
    """A recurrent model's initial state, one array per state tensor without the batch
    axis (None: feed-forward). Draws nothing from torch's global generator."""
    if not spec.recurrent:
        return None
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        return [t.numpy().astype(np.float32)[0] for t in spec.build().initial_state(1)]


def policy_recurrent_columns(batch: dict[str, np.ndarray],
                             initial: list[np.ndarray] | None,
                             prev_inputs: tuple[str, ...]) -> dict[str, Any]:
    """One policy's slot columns of a fragment with its own recurrent layout.

    Args:
        batch: the policy's slot columns (``[T, slots, ...]``; states ``[S, slots,
            ...]``, zero-padded to the widest policy's).
        initial: the policy's ``initial_state`` (None: feed-forward).
        prev_inputs: the previous-input columns its model reads.
    """
    out = {}
    for name, value in batch.items():
        if name.startswith(C.STATE_IN):
            k = int(name[len(C.STATE_IN):])
            if initial is None or k >= len(initial):
                continue
            value = value[(slice(None), slice(None),
                           *(slice(0, d) for d in initial[k].shape))]
        elif name in _PREV and name not in prev_inputs:
            continue
        out[name] = value
    return out
