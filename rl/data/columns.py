"""Column names of sample batches: the one place they are spelled.

Time-major on the worker (``[T, N, ...]``), flattened to ``[B, ...]`` for SGD.
"""

OBS = "obs"
NEXT_OBS = "next_obs"
ACTIONS = "actions"
REWARDS = "rewards"
TERMINATEDS = "terminateds"
TRUNCATEDS = "truncateds"
LOGP = "logp"
VF_PREDS = "vf_preds"
NEXT_VF_PREDS = "next_vf_preds"
ADVANTAGES = "advantages"
VALUE_TARGETS = "value_targets"
BEHAVIOUR_LOGITS = "behaviour_logits"
ENV_IDS = "env_ids"
WEIGHTS = "weights"
BATCH_INDEXES = "batch_indexes"
DISCOUNTS = "discounts"
# Recurrent policies: the model state at the rows where the learner's sequences may
# start (every max_seq_len-th row of a fragment), one column per state tensor
# (state_in_0, state_in_1, ...: [ceil(T / max_seq_len), N, ...]), and, in sequence
# batches, which padded rows are real steps.
STATE_IN = "state_in_"
SEQ_MASK = "seq_mask"
# Recurrent policies with lstm_use_prev_action / lstm_use_prev_reward: the inputs the
# model got beside each row's observation, the previous step's action (float32, the
# action's shape) and reward ([T, N]), zeros at an episode's first step.
PREV_ACTIONS = "prev_actions"
PREV_REWARDS = "prev_rewards"
# Multi-agent fragments: the rows that are transitions ([T, N] bool), not a slot's
# padding (the agent is not in the game, or another agent moves) nor a broken game's:
# the complement of the result's ``discarded``, in the batch for learners that train on
# fragments as they are (IMPALA).
VALID = "valid"
# Off-policy learners: |Q(s, a) - y| per replayed row, the new PER priorities.
TD_ERRORS = "td_errors"


def state_column(k: int) -> str:
    """The column of the model state's ``k``-th tensor."""
    return f"{STATE_IN}{k}"
