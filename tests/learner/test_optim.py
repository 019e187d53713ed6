"""rl.learner.optim.Adam against torch.optim.Adam: the same trajectory, the same state
layout both ways, and no torch._dynamo import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rl.learner import optim
from rl.learner.optim import Adam


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _train(net: torch.nn.Module, opt, steps: int, seed: int = 1, lr_schedule=None) -> None:
    gen = torch.Generator().manual_seed(seed)
    for k in range(steps):
        if lr_schedule is not None:
            for group in opt.param_groups:
                group["lr"] = lr_schedule(k)
        x = torch.randn(32, 5, generator=gen)
        y = torch.randn(32, 3, generator=gen)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kwargs", [dict(lr=1e-3, eps=1e-5), dict(lr=3e-2, betas=(0.8, 0.99)),
                                    dict(lr=1e-2, weight_decay=0.1)])
def test_cpu_steps_equal_torch_adam_bit_for_bit(kwargs):
    ours, ref = _net(), _net()
    _train(ours, Adam(ours.parameters(), **kwargs), 60, lr_schedule=lambda k: kwargs["lr"] / (1 + k))
    _train(ref, torch.optim.Adam(ref.parameters(), foreach=False, **kwargs), 60,
           lr_schedule=lambda k: kwargs["lr"] / (1 + k))
    assert _same(ours, ref)
    moved = _net()
    assert not _same(ours, moved)  # it did train


def test_multi_tensor_path_equals_torch_foreach_adam():
    """The CUDA path (multi-tensor ops), run on the CPU, against torch's foreach Adam."""
    ours, ref = _net(), _net()
    opt = Adam(ours.parameters(), lr=1e-2, eps=1e-5, weight_decay=0.01)
    gen = torch.Generator().manual_seed(3)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2, eps=1e-5, weight_decay=0.01,
                               foreach=True)
    for _ in range(40):
        x, y = torch.randn(16, 5, generator=gen), torch.randn(16, 3, generator=gen)
        for net in (ours, ref):
            net.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(x), y).backward()
        params = [p for p in ours.parameters()]
        with torch.no_grad():
            optim._foreach_step(opt.param_groups[0], params, [opt._state(p) for p in params])
        ref_opt.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_state_dict_round_trips_with_torch_adam_both_ways():
    ours, ref = _net(), _net()
    opt = Adam(ours.parameters(), lr=1e-3, eps=1e-5)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3, eps=1e-5)
    _train(ours, opt, 10)
    _train(ref, ref_opt, 10)
    mine, theirs = opt.state_dict(), ref_opt.state_dict()
    assert mine["param_groups"] == theirs["param_groups"]
    assert mine["state"].keys() == theirs["state"].keys()
    for i in mine["state"]:
        assert mine["state"][i].keys() == theirs["state"][i].keys()
        for key in mine["state"][i]:
            assert torch.equal(mine["state"][i][key], theirs["state"][i][key])
    # torch's state into ours (an old checkpoint), then both go on identically.
    a, b = _net(5), _net(5)
    a.load_state_dict(ref.state_dict())
    b.load_state_dict(ref.state_dict())
    opt_a = Adam(a.parameters(), lr=0.5)
    opt_a.load_state_dict(theirs)
    assert opt_a.param_groups[0]["lr"] == 1e-3
    opt_b = torch.optim.Adam(b.parameters(), lr=0.5, foreach=False)
    opt_b.load_state_dict(mine)  # ours into torch's
    _train(a, opt_a, 10, seed=9)
    _train(b, opt_b, 10, seed=9)
    assert _same(a, b)


def test_bad_arguments_and_mismatched_state_are_clear_errors():
    net = _net()
    with pytest.raises(ValueError, match="lr must be"):
        Adam(net.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        Adam(net.parameters(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        Adam([])
    opt = Adam(net.parameters())
    other = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="groups of sizes"):
        opt.load_state_dict(other.state_dict())
    ams = torch.optim.Adam(net.parameters(), amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):
        opt.load_state_dict(ams.state_dict())


def test_groups_keep_their_own_hyper_parameters():
    net = _net()
    first, second = list(net.parameters())[:2], list(net.parameters())[2:]
    opt = Adam([{"params": first}, {"params": second, "lr": 0.0}], lr=0.1)
    before = [p.detach().clone() for p in second]
    _train(net, opt, 3)
    assert all(torch.equal(p, q) for p, q in zip(second, before))
    assert opt.param_groups[0]["lr"] == 0.1


def test_building_and_stepping_it_fused_and_clipping_do_not_import_torch_dynamo():
    code = ("import sys, torch\nfrom rl.learner.optim import Adam\n"
            "from rl.learner.learner import clip_grad_norm\n"
            "net = torch.nn.Linear(3, 2)\nopt = Adam(net.parameters(), lr=1e-3, fused=True)\n"
            "net(torch.ones(4, 3)).sum().backward()\n"
            "clip_grad_norm(list(net.parameters()), 1.0)\nopt.step()\nopt.zero_grad()\n"
            "opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kwargs", [dict(lr=1e-3, eps=1e-5), dict(lr=1e-2, weight_decay=0.1)])
def test_fused_steps_equal_torch_fused_adam_bit_for_bit_and_share_its_state(kwargs):
    ours, ref = _net(), _net()
    opt = Adam(ours.parameters(), fused=True, **kwargs)
    ref_opt = torch.optim.Adam(ref.parameters(), fused=True, **kwargs)
    _train(ours, opt, 60, lr_schedule=lambda k: kwargs["lr"] / (1 + k))
    _train(ref, ref_opt, 60, lr_schedule=lambda k: kwargs["lr"] / (1 + k))
    assert _same(ours, ref) and not _same(ours, _net())
    assert opt.state_dict()["param_groups"] == ref_opt.state_dict()["param_groups"]
    # torch's fused state into ours, then both go on identically.
    a, b = _net(5), _net(5)
    a.load_state_dict(ref.state_dict())
    b.load_state_dict(ref.state_dict())
    opt_a = Adam(a.parameters(), lr=0.5, fused=True)
    opt_a.load_state_dict(ref_opt.state_dict())
    opt_b = torch.optim.Adam(b.parameters(), lr=0.5, fused=True)
    opt_b.load_state_dict(opt.state_dict())
    _train(a, opt_a, 10, seed=9)
    _train(b, opt_b, 10, seed=9)
    assert _same(a, b)


@pytest.mark.parametrize("max_norm", [10.0, 0.05, None])
def test_clip_grad_norm_equals_torch_clip_grad_norm_bit_for_bit(max_norm):
    from rl.learner.learner import clip_grad_norm

    ours, ref = _net(), _net()
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(32, 5, generator=gen), 10 * torch.randn(32, 3, generator=gen)
    for net in (ours, ref):
        torch.nn.functional.mse_loss(net(x), y).backward()
    norm = clip_grad_norm(list(ours.parameters()), max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(),
                                              max_norm if max_norm is not None else float("inf"))
    assert torch.equal(norm, ref_norm)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(ours.parameters(), ref.parameters()))
    if max_norm == 0.05:  # it did clip
        clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours.parameters()]))
        assert abs(float(clipped) - 0.05) < 1e-4 < float(norm)
