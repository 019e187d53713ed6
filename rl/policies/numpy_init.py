"""Initial weights of the built-in MLP models, drawn in numpy (no torch needed).

``initial_weights(spec, seed, index)`` is the flat weight vector (``flat_params``
order, ``rl.policies.numpy_params.param_layout``) a freshly built model would start
from, with the built-in models' initialisation (``rl.policies.models``; Huang et al.
2022, "The 37 Implementation Details of PPO"): orthogonal weight matrices (Saxe et al.
2014, "Exact solutions to the nonlinear dynamics of learning in deep linear neural
networks") with gain sqrt(2) in hidden layers, 0.01 for the policy head (and SAC's
actor head), 1.0 for the value, advantage and state-value heads; zero biases and zero
``log_std``.

The algorithm draws them before any torch import, publishes them to the workers (which
start sampling at once) and loads them into the learners it builds meanwhile, so that
learner and workers start from the same weights. Models without a numpy layout (the
CNN, the LSTM, a user's model) get None and keep torch's initialisation.
"""

from __future__ import annotations

import math

import numpy as np

from rl.policies.model_spec import ModelSpec
from rl.policies.numpy_params import param_layout

__all__ = ["initial_weights", "orthogonal"]

# Output layers' gains, by the layer's name in the layout; every other weight matrix
# is a hidden layer (gain sqrt(2)).
_HEAD_GAINS = {"pi_head": 0.01, "head": 0.01, "vf_head": 1.0, "adv_head": 1.0,
               "val_head": 1.0}


def orthogonal(rng: np.random.Generator, shape: tuple[int, int], gain: float) -> np.ndarray:
    """A ``shape`` matrix with orthonormal rows (or columns, whichever are fewer) times
    ``gain``: the Q of a Gaussian matrix's QR decomposition, its signs fixed by R's
    diagonal so that it is uniformly (Haar) distributed (Mezzadri 2007)."""
    rows, cols = shape
    gaussian = rng.standard_normal((rows, cols))
    flip = rows < cols
    q, r = np.linalg.qr(gaussian.T if flip else gaussian)
    q = q * np.sign(np.diag(r))
    return (gain * (q.T if flip else q)).astype(np.float32)


def initial_weights(spec: ModelSpec, seed: int, index: int = 0) -> np.ndarray | None:
    """The flat initial weights of ``spec``'s built-in MLP model, from the run's
    ``seed`` and the policy's ``index`` (each policy its own stream); None when the
    model has no numpy layout."""
    layout = param_layout(spec)
    if layout is None:
        return None
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), 0x1417])
    pieces = []
    for name, shape in layout:
        layer, _, kind = name.removeprefix("model.").rpartition(".")
        if kind == "weight" and len(shape) == 2:
            gain = _HEAD_GAINS.get(layer, math.sqrt(2))
            pieces.append(orthogonal(rng, shape, gain).reshape(-1))
        else:  # biases and log_std
            pieces.append(np.zeros(int(np.prod(shape)), np.float32))
    return np.concatenate(pieces)
