"""The reproducible operators: accurate, and rounded in the order the docstring promises."""

from __future__ import annotations

import torch

from veriml.training import repops
from veriml.training.data import digits
from veriml.training.mlp import TrainConfig, init_state, train_step
from veriml.training.plain import PlainMLP


def test_tree_sum_is_the_pairwise_tree() -> None:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    r = x.unbind(0)
    # 7 -> (0+3, 1+4, 2+5, 6) -> ((0+3)+(2+5), (1+4)+6) -> sum of those two
    expect = ((r[0] + r[3]) + (r[2] + r[5])) + ((r[1] + r[4]) + r[6])
    assert torch.equal(repops.tree_sum(x, 0), expect)


def test_matmul_close_to_blas_and_shape_checked() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(33, 70, generator=g), torch.randn(70, 21, generator=g)
    assert torch.allclose(repops.matmul(a, b), a @ b, atol=1e-4)
    try:
        repops.matmul(a, a)
    except ValueError:
        pass
    else:
        raise AssertionError("mismatched shapes accepted")


def test_blocked_matmul_gives_the_same_bits(monkeypatch) -> None:
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(16, 40, generator=g), torch.randn(40, 50, generator=g)
    whole = repops.matmul(a, b)
    monkeypatch.setattr(repops, "CHUNK", 16 * 40 * 3)  # blocks of 3 columns
    assert torch.equal(repops.matmul(a, b), whole)


def test_exp_and_log_accurate() -> None:
    x = torch.linspace(-80, 80, 20001)
    ref = torch.exp(x.double())
    assert (((repops.rep_exp(x).double() - ref).abs() / ref).max()) < 2.5e-7
    y = torch.logspace(-30, 30, 20001)
    assert (repops.rep_log(y).double() - torch.log(y.double())).abs().max() < 2e-5


def test_loss_and_grad_match_autograd() -> None:
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
    zz = z.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(zz, y)
    loss.backward()
    assert abs(float(repops.ce_loss(z, y)[0]) - loss.item()) < 1e-5
    assert torch.allclose(repops.ce_grad(z, y), zz.grad, atol=1e-7)


def test_dropout_mask_is_seeded() -> None:
    m = repops.dropout_mask(seed=3, step=5, layer=0, rows=32, cols=64, p=0.25)
    assert torch.equal(m, repops.dropout_mask(seed=3, step=5, layer=0, rows=32, cols=64, p=0.25))
    assert not torch.equal(m, repops.dropout_mask(seed=3, step=6, layer=0, rows=32, cols=64, p=0.25))
    assert set(m.unique().tolist()) == {0.0, float(torch.tensor(1 / 0.75, dtype=torch.float32))}
    assert 0.15 < float((m == 0).float().mean()) < 0.35


def _plain_step(cfg: TrainConfig, idx: torch.Tensor, data) -> dict[str, torch.Tensor]:
    model = PlainMLP(cfg)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
        opt.step()
    return model.params()


def test_two_steps_match_torch_optim_to_rounding() -> None:
    """Forward, backward, SGD-momentum and Adam compute what nn.Linear + autograd + torch.optim compute."""
    data, _ = digits()
    for opt, lr in (("sgd", 0.05), ("adam", 0.003)):
        cfg = TrainConfig(optimizer=opt, lr=lr)
        idx = torch.arange(cfg.batch)
        state = init_state(cfg)
        for s in range(2):
            state = train_step(cfg, state, data, s, indices=idx)[0]
        ref = _plain_step(cfg, idx, data)
        for name, t in ref.items():
            assert torch.allclose(state[name], t, atol=2e-6), (opt, name, (state[name] - t).abs().max())


def test_transformer_block_gradients_match_autograd() -> None:
    from veriml.training.graph import execute
    from veriml.training.mlp import step_program, step_sources
    from veriml.training.plain import PlainBlock

    data, _ = digits()
    cfg = TrainConfig(arch="block", sizes=(64, 10), batch=8, d_model=16, d_ff=24, optimizer="adam", lr=0.003)
    idx = torch.arange(cfg.batch)
    values, _ = execute(step_program(cfg, 0), step_sources(init_state(cfg), data, idx))
    model = PlainBlock(cfg)
    loss = torch.nn.functional.cross_entropy(model(data.x[idx]), data.y[idx])
    loss.backward()
    assert abs(float(values["loss"][0]) - loss.item()) < 1e-5
    for name in cfg.param_names():
        g = model._param(name).grad
        assert torch.allclose(values["grad:" + name], g, atol=1e-6), name


def test_rep_sqrt_correctly_rounded_where_torch_is_not() -> None:
    import numpy as np

    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(20000, generator=g) * 1e-4, torch.rand(20000, generator=g) * 1e30,
                   torch.tensor([0.0, 1.0, 2.0, 4.0, 3.4e38, 1e-45, 1e-40])])  # fmt: skip
    exact = np.sqrt(x.numpy().astype(np.float64)).astype(np.float32).view(np.int32)  # double rounding is safe
    assert (repops.rep_sqrt(x).numpy().view(np.int32) != exact).sum() == 0
    off = int((torch.sqrt(x).numpy().view(np.int32) != exact).sum())
    print(f"torch.sqrt float32: {off} of {x.numel()} results not correctly rounded")
