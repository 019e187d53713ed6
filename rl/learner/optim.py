"""rl's Adam: the learners' default optimizer, without ``torch.optim``'s start-up cost.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` the first time one is built or
stepped (its methods are wrapped to opt out of compilation), which takes as long as
importing torch itself (~1.2 s here). A short run pays that before its first update.
``Adam`` here is the same algorithm (Kingma & Ba, 2015, "Adam: A Method for Stochastic
Optimization", Algorithm 1, with the bias corrections folded into the step size and
``eps`` added to the corrected second moment) written on plain tensor ops:

- the same arithmetic, op for op, as ``torch.optim.Adam`` on the CPU (its per-tensor
  path) with L2 ``weight_decay`` added to the gradient, so that training is
  bit-for-bit the same; on CUDA the multi-tensor (``torch._foreach_*``) form of the
  same ops, as torch uses there (``tests/learner/test_optim.py`` checks both);
- with ``fused=True``, torch's fused kernel (``torch._fused_adam_``, one kernel for all
  tensors) called as ``torch.optim.Adam(fused=True)`` calls it, for the same result
  bit for bit at a fraction of the per-step cost: what learners of small networks
  (DQN, SAC) use, where an update's Python overhead outweighs its arithmetic;
- the same ``state_dict`` layout (``state``: per-parameter ``step``, ``exp_avg``,
  ``exp_avg_sq``; ``param_groups`` with torch's keys), so a checkpoint written with
  ``torch.optim.Adam`` loads into it and the other way round.

It offers what the learners use: ``param_groups`` (``lr`` is set per group by the
schedules), ``state``, ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``.
A learner that wants another optimizer overrides ``Learner.make_optimizer`` with any
``torch.optim`` one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Adam"]

# torch.optim.Adam's group keys, with the values this Adam implements (a loaded group
# must agree on the ones it cannot change).
_FIXED = {"amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
          "differentiable": False, "fused": None, "decoupled_weight_decay": False}
# Devices torch's fused Adam kernel runs on.
_FUSED_DEVICES = ("cpu", "cuda")


class Adam:
    """Adam over ``params`` (tensors, or ``{"params": [...], **overrides}`` groups).

    Args:
        lr: step size (a group's ``lr`` may be changed between steps).
        betas: decay rates of the first and second moment estimates.
        eps: added to the bias-corrected square root of the second moment.
        weight_decay: L2 penalty, added to the gradient (as ``torch.optim.Adam``).
        fused: step with torch's fused kernel (CPU and CUDA parameters; others step
            with the plain ops).

    Raises:
        ValueError: a hyper-parameter out of its range, or no parameters.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, fused: bool = False):
        _check(lr, betas, eps, weight_decay)
        self.defaults = {"lr": lr, "betas": tuple(betas), "eps": eps,
                         "weight_decay": weight_decay, **_FIXED, "fused": bool(fused) or None}
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        seen: set[int] = set()
        for group in groups:
            group = {**self.defaults, **group, "params": list(group["params"])}
            _check(group["lr"], group["betas"], group["eps"], group["weight_decay"])
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError("a parameter appears in more than one Adam group")
                seen.add(id(p))
            self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().requires_grad_(False)
                    p.grad.zero_()

    def _state(self, p: torch.Tensor, fused: bool = False) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            # The fused kernel reads the step count on the parameter's device.
            state = self.state[p] = {
                "step": torch.tensor(0.0, dtype=torch.float32,
                                     device=p.device if fused else None),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Adam does not support sparse gradients")
            fused = bool(group["fused"]) and all(p.device.type in _FUSED_DEVICES
                                                  for p in params)
            states = [self._state(p, fused) for p in params]
            if fused:
                _fused_step(group, params, states)
            elif all(p.device.type == "cuda" for p in params):
                _foreach_step(group, params, states)
            else:
                _per_tensor_step(group, params, states)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam``'s layout: parameters by position over the groups."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict`` of this class or of ``torch.optim.Adam``.

        Raises:
            ValueError: its groups do not match these in number or size, or it uses an
                Adam variant this class does not implement (amsgrad, maximize, ...).
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError(
                f"optimizer state has groups of sizes {[len(g['params']) for g in groups]}, "
                f"this optimizer {[len(g['params']) for g in self.param_groups]}")
        for g in groups:
            for key, value in _FIXED.items():
                if key in g and bool(g[key]) != bool(value) and key not in ("foreach", "fused"):
                    raise ValueError(f"optimizer state uses Adam's {key}={g[key]!r}, which "
                                     f"rl.learner.optim.Adam does not implement")
        saved = state_dict["state"]
        self.state = {}
        for g, own in zip(groups, self.param_groups):
            for key in ("lr", "betas", "eps", "weight_decay"):
                if key in g:
                    own[key] = tuple(g[key]) if key == "betas" else g[key]
            for i, p in zip(g["params"], own["params"]):
                if i in saved:
                    s = saved[i]
                    device = p.device if own["fused"] else "cpu"
                    self.state[p] = {
                        "step": torch.as_tensor(s["step"], dtype=torch.float32).detach().to(
                            device, copy=True),
                        "exp_avg": s["exp_avg"].detach().to(p.device, p.dtype, copy=True),
                        "exp_avg_sq": s["exp_avg_sq"].detach().to(p.device, p.dtype, copy=True)}


def _check(lr: float, betas, eps: float, weight_decay: float) -> None:
    if not (isinstance(lr, (int, float)) and lr >= 0):
        raise ValueError(f"Adam lr must be a number >= 0, got {lr!r}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"Adam betas must be two numbers in [0, 1), got {betas!r}")
    if not eps >= 0:
        raise ValueError(f"Adam eps must be >= 0, got {eps!r}")
    if not weight_decay >= 0:
        raise ValueError(f"Adam weight_decay must be >= 0, got {weight_decay!r}")


def _per_tensor_step(group: dict[str, Any], params: list[torch.Tensor],
                     states: list[dict[str, torch.Tensor]]) -> None:
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    for p, s in zip(params, states):
        grad = p.grad
        s["step"] += 1
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        s["exp_avg"].lerp_(grad, 1 - beta1)
        s["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = s["step"].item()
        step_size = lr / (1 - beta1 ** step)
        denom = (s["exp_avg_sq"].sqrt() / (1 - beta2 ** step) ** 0.5).add_(eps)
        p.addcdiv_(s["exp_avg"], denom, value=-step_size)


def _foreach_step(group: dict[str, Any], params: list[torch.Tensor],
                  states: list[dict[str, torch.Tensor]]) -> None:
    """The same step as ``_per_tensor_step``, one kernel per op for all tensors."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    grads = [p.grad for p in params]
    m = [s["exp_avg"] for s in states]
    v = [s["exp_avg_sq"] for s in states]
    torch._foreach_add_([s["step"] for s in states], 1)
    if wd != 0:
        grads = torch._foreach_add(grads, params, alpha=wd)
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
    steps = [s["step"].item() for s in states]
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, [(1 - beta2 ** t) ** 0.5 for t in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, [-lr / (1 - beta1 ** t) for t in steps])


def _fused_step(group: dict[str, Any], params: list[torch.Tensor],
                states: list[dict[str, torch.Tensor]]) -> None:
    """The step of ``torch.optim.Adam(fused=True)``: the kernel per device and dtype."""
    by_kind: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        by_kind.setdefault((p.device, p.dtype), []).append(i)
    (beta1, beta2) = group["betas"]
    for rows in by_kind.values():
        steps = [states[i]["step"] for i in rows]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_([params[i] for i in rows], [params[i].grad for i in rows],
                           [states[i]["exp_avg"] for i in rows],
                           [states[i]["exp_avg_sq"] for i in rows], [], steps,
                           amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                           weight_decay=group["weight_decay"], eps=group["eps"],
                           maximize=False, grad_scale=None, found_inf=None)
