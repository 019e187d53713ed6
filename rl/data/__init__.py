"""Experience data: column names, SampleBatch, replay buffers."""

from rl.data import columns
from rl.data.sample_batch import SampleBatch, minibatches

__all__ = ["SampleBatch", "columns", "minibatches"]
