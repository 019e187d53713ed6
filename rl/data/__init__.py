"""Experience data: column names, SampleBatch, n-step accumulation, replay buffers."""

from rl.data import columns
from rl.data.nstep import NStepAccumulator
from rl.data.replay import PrioritizedReplayBuffer, ReplayBuffer
from rl.data.sample_batch import SampleBatch, minibatches

__all__ = ["NStepAccumulator", "PrioritizedReplayBuffer", "ReplayBuffer", "SampleBatch", "columns",
           "minibatches"]
