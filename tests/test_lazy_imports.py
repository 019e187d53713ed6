"""What loads without torch: the parts a torch-free rollout worker is built from.

Each check runs in a fresh interpreter (this test process has torch loaded already), so
that a module-level ``import torch`` anywhere in the import graph fails it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["rl.data", "rl.data.returns", "rl.envs", "rl.envs.obs_layout",
              "rl.envs.normalization", "rl.callbacks", "rl.runtime.process", "rl.policies",
              "rl.policies.model_spec", "rl.policies.dist_spec", "rl.policies.numpy_params",
              "rl.policies.numpy_dists"]


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


@pytest.mark.parametrize("kind, action_space", [
    ("actor_critic", "Discrete(3)"), ("q", "Discrete(3)"),
    ("squashed_gaussian", "Box(-1.0, 1.0, (2,))")])
def test_builtin_model_spec_unpickles_without_torch(kind, action_space):
    import pickle

    import cloudpickle
    from gymnasium import spaces

    from rl.policies import ActorCritic, ModelSpec

    act = eval(f"spaces.{action_space}", {"spaces": spaces})
    spec = ModelSpec.create(kind, spaces.Box(-1, 1, (4,)), act, None, {"hiddens": [8]})
    blob = cloudpickle.dumps(spec)
    code = ("import pickle, sys; spec = pickle.loads(sys.stdin.buffer.read()); "
            "print(spec.kind, spec.dist_spec.input_dim, spec.num_outputs); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, f"unpickling the spec loaded torch: {proc.stderr[-2000:]}"
    assert proc.stdout.decode().split() == [kind, str(spec.dist_spec.input_dim),
                                            str(spec.num_outputs)]
    # Where a module is built, the class resolves again.
    again = pickle.loads(blob)
    assert again.cls is None and again.model_cls is spec.model_cls
    assert (kind != "actor_critic") or isinstance(again.build(), ActorCritic)


def test_the_algorithms_import_without_torch():
    """The driver starts its workers before it imports torch (tests/test_startup.py): the
    algorithm classes, their configs and checkpoints import none of it."""
    code = ("import sys\nfrom rl.algorithms.registry import ALGORITHMS, algorithm_class\n"
            "import rl.checkpoint\n"
            "for name in ALGORITHMS:\n    algorithm_class(name).config_class()\n"
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, f"importing the algorithms loaded torch: {proc.stderr[-2000:]}"
