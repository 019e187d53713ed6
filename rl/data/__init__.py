"""Experience data: column names, SampleBatch, replay buffers."""

from rl.data import columns
from rl.data.sample_batch import SampleBatch

__all__ = ["SampleBatch", "columns"]
