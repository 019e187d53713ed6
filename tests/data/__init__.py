"""Tests of rl.data: return estimators, n-step accumulation, replay buffers."""
