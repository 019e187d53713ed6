"""PPO: synchronous sampling from every worker, GAE, epochs of minibatch SGD.

Schulman et al. 2017 (arXiv:1707.06347), with the implementation details of
Huang et al. 2022, "The 37 Implementation Details of Proximal Policy Optimization"
(ICLR blog track): orthogonal initialisation, advantage normalisation per minibatch,
clipped value loss, global gradient clipping, learning-rate annealing.

With a recurrent model (``use_lstm``) the train batch is padded sequences of at most
``max_seq_len`` steps with their start states (``rl.data.sequences``), cut after GAE,
which runs on the whole time-major fragment as always.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl.algorithms.algorithm import Algorithm
from rl.algorithms.multi_agent import initial_state, policy_recurrent_columns
from rl.algorithms.ppo.config import PPOConfig
from rl.data import SampleBatch
from rl.data import columns as C
from rl.data.returns import compute_gae
from rl.data.sequences import to_sequences
from rl.envs.normalization import RewardScaler
from rl.imports import LazyClass
from rl.policies.model_spec import ACTOR_CRITIC, PREV_INPUTS, RECURRENT

__all__ = ["PPO", "fragments_to_train_batch"]

_TRAIN_COLUMNS = (C.OBS, C.ACTIONS, C.LOGP, C.VF_PREDS, C.BEHAVIOUR_LOGITS)


def fragments_to_train_batch(results: list[dict[str, Any]], gamma: float, lam: float,
                             reward_scaler: RewardScaler | None = None,
                             sequences: tuple[int, list, int] | None = None,
                             compact: bool = False) -> SampleBatch:
    """GAE on each time-major fragment (rewards optionally scaled), then one flat batch
    without the rows of episodes that a sub-env error broke.

    ``sequences``: ``(max_seq_len, initial_state, num_shards)`` for a recurrent model:
    the batch is then padded sequences (broken rows masked out), their count a multiple
    of ``num_shards``.

    ``compact``: GAE skips the ``discarded`` rows instead of ending returns there (a
    multi-agent slot's padding between an agent's turns, ``rl.rollout.turn_based``)."""
    parts = []
    for r in results:
        b = r["batch"]
        rewards = b[C.REWARDS]
        if reward_scaler is not None:
            dones = b[C.TERMINATEDS] | b[C.TRUNCATEDS]
            rewards = reward_scaler(r["worker_index"], rewards, dones)
        adv, targets = compute_gae(
            rewards=rewards, values=b[C.VF_PREDS], next_values=b[C.NEXT_VF_PREDS],
            terminateds=b[C.TERMINATEDS], truncateds=b[C.TRUNCATEDS], gamma=gamma, lam=lam,
            valid=None if not compact or r.get("discarded") is None else ~r["discarded"])
        cols = {k: b[k] for k in _TRAIN_COLUMNS + PREV_INPUTS if k in b}
        cols[C.ADVANTAGES] = adv
        cols[C.VALUE_TARGETS] = targets
        if sequences is not None:
            max_seq_len, initial, _ = sequences
            states = [b[C.state_column(k)] for k in range(len(initial))]
            parts.append(to_sequences(cols, states, initial, terminateds=b[C.TERMINATEDS],
                                      truncateds=b[C.TRUNCATEDS], max_seq_len=max_seq_len,
                                      discarded=r.get("discarded")))
            continue
        flat = SampleBatch(cols).flatten_time()
        if r.get("discarded") is not None:
            flat = flat[~r["discarded"].reshape(-1)]
        parts.append(flat)
    batch = SampleBatch.concat(parts)
    if sequences is not None and len(batch) % sequences[2]:
        extra = -len(batch) % sequences[2]  # empty sequences: every learner gets as many
        batch = SampleBatch({k: np.concatenate([v, np.zeros((extra, *v.shape[1:]), v.dtype)])
                             for k, v in batch.items()})
    return batch


class PPO(Algorithm):
    """Proximal policy optimisation."""

    config_class = PPOConfig
    config: PPOConfig
    learner_class = LazyClass("rl.algorithms.ppo.learner:PPOLearner")
    model_kinds = (ACTOR_CRITIC, RECURRENT)
    multi_agent = True
    recurrent_multi_agent = True

    def setup(self) -> None:
        self.reward_scaler = RewardScaler(self.config.gamma) if self.config.normalize_rewards \
            else None
        # Per policy: (max_seq_len, initial state, shards) for a recurrent one, else None.
        self.policy_sequences = {
            pid: None if (initial := initial_state(spec)) is None else
            (self.config.max_seq_len, initial, max(1, self.config.num_learners))
            for pid, spec in self.model_specs.items()}
        self.sequences = self.policy_sequences[self.policy_map.ids[0]]

    def first_sample_request(self) -> dict[str, Any]:
        return {}  # training_step's first workers.sample()

    def training_step(self) -> dict[str, float]:
        cfg = self.config
        with self.timers("sample"):
            results = self.workers.sample()
            self.ingest_fragments(results)
            if self.agents is None:
                batches = {self.policy_map.ids[0]: fragments_to_train_batch(
                    results, cfg.gamma, cfg.gae_lambda, self.reward_scaler, self.sequences)}
            else:
                batches = self._policy_batches(results)
            self.workers.release_blocks(results)  # the train batches hold copies
        metrics: dict[str, float] = {}
        with self.timers("learn"):
            for pid, batch in batches.items():
                pcfg = self.policy_config(pid)
                out = self.learner_groups[pid].update(
                    batch,
                    lr=self.schedule(pcfg.lr, 0.0, cfg.lr_schedule),
                    entropy_coeff=self.schedule(pcfg.entropy_coeff, cfg.entropy_coeff_final),
                )
                # Multi-agent: learner/<policy>/<metric>.
                metrics.update(out if self.agents is None else
                               {f"{pid}/{k}": v for k, v in out.items()})
        self.sync_weights()
        return metrics

    def _policy_batches(self, results: list[dict[str, Any]]) -> dict[str, SampleBatch]:
        """Multi-agent: each trainable policy's train batch from its slots' columns of
        every fragment (GAE along each slot, one agent's own trajectory)."""
        cfg = self.config
        if self.reward_scaler is not None:  # scaled per slot, before the split
            results = [{**r, "batch": {**r["batch"], C.REWARDS: self.reward_scaler(
                r["worker_index"], r["batch"][C.REWARDS],
                r["batch"][C.TERMINATEDS] | r["batch"][C.TRUNCATEDS])}} for r in results]
        batches = {}
        for k, pid in enumerate(self.policy_map.ids):
            if pid not in self.policy_map.trainable:
                continue
            sequences = self.policy_sequences[pid]
            parts = []
            for r in results:
                num_games = r["batch"][C.REWARDS].shape[1] // len(self.agents)
                slots = self.policy_map.slots(k, num_games)
                discarded = r.get("discarded")
                columns = self.policy_columns(k, r["batch"])
                if len(self.policy_map.ids) > 1:  # each policy's own recurrent columns
                    columns = policy_recurrent_columns(columns, sequences and sequences[1],
                                                       self.model_specs[pid].prev_inputs)
                parts.append({"worker_index": r["worker_index"], "batch": columns,
                              "discarded": None if discarded is None else discarded[:, slots]})
            batches[pid] = fragments_to_train_batch(parts, cfg.gamma, cfg.gae_lambda,
                                                    sequences=sequences, compact=True)
        return batches

    def extra_state(self):
        arrays = {"reward_scaler": self.reward_scaler.state()} if self.reward_scaler else {}
        return {}, {}, arrays

    def load_extra_state(self, path: str, state: dict[str, Any]) -> None:
        from rl.checkpoint import load_arrays

        saved = load_arrays(path, "reward_scaler")
        if self.reward_scaler is not None and saved is not None:
            self.reward_scaler.load_state(saved)
