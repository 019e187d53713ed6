"""What loads without torch: the parts a torch-free rollout worker is built from.

Each check runs in a fresh interpreter (this test process has torch loaded already), so
that a module-level ``import torch`` anywhere in the import graph fails it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["rl.data", "rl.data.returns", "rl.envs", "rl.envs.obs_layout",
              "rl.envs.normalization", "rl.callbacks", "rl.runtime.process"]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module):
    code = (f"import sys, {module}; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"importing {module} loaded torch: {proc.stderr[-2000:]}"


def test_obs_layout_split_numpy_and_torch_agree():
    import numpy as np
    import torch
    from gymnasium import spaces

    from rl.envs.obs_layout import ObsLayout

    layout = ObsLayout.of(spaces.Dict({"a": spaces.Box(0, 1, (2,)),
                                       "action_mask": spaces.MultiBinary(3),
                                       "b": spaces.Box(0, 1, (1,))}))
    flat = np.arange(12, dtype=np.float32).reshape(2, 6)
    rest, mask = layout.split(flat)
    t_rest, t_mask = layout.split(torch.from_numpy(flat))
    np.testing.assert_array_equal(rest, [[0, 1, 5], [6, 7, 11]])
    np.testing.assert_array_equal(mask, [[2, 3, 4], [8, 9, 10]])
    np.testing.assert_array_equal(t_rest.numpy(), rest)
    np.testing.assert_array_equal(t_mask.numpy(), mask)
