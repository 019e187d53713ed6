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
