"""The same model and run in plain PyTorch (nn.Linear, autograd, torch.optim): the fast path with no
reproducibility argument, for the speed comparison and to measure whether it reproduces at all.

It starts from the reproducible runtime's init and follows the same seeded batch schedule, so the two differ
only in the kernels' rounding (its matmuls are MKL/oneDNN, its reductions torch's own).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from veriml.training.data import Dataset
from veriml.training.mlp import TrainConfig, init_params, schedule


class PlainMLP(nn.Module):
    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(cfg.layers):
            layers.append(nn.Linear(cfg.sizes[i], cfg.sizes[i + 1]))
            if i + 1 < cfg.layers:
                layers.append(nn.ReLU())
                if cfg.dropout > 0:
                    layers.append(nn.Dropout(cfg.dropout))
        self.net = nn.Sequential(*layers)
        params = init_params(cfg)
        with torch.no_grad():
            linears = [m for m in self.net if isinstance(m, nn.Linear)]
            for i, lin in enumerate(linears):
                lin.weight.copy_(params[f"l{i}.weight"])
                lin.bias.copy_(params[f"l{i}.bias"])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def params(self) -> dict[str, Tensor]:
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        out = {}
        for i, lin in enumerate(linears):
            out[f"l{i}.weight"], out[f"l{i}.bias"] = lin.weight.detach().clone(), lin.bias.detach().clone()
        return out


def plain_train(
    cfg: TrainConfig, data: Dataset, steps: int, on_step: Callable[[int], None] | None = None
) -> dict[str, Tensor]:
    """Train `steps` steps with torch.optim and return the parameters."""
    torch.manual_seed(cfg.seed)  # only dropout draws from torch's generator here
    model = PlainMLP(cfg)
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=False)
    loss_fn = nn.CrossEntropyLoss()
    for s in range(steps):
        idx = schedule(cfg, data, s)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(data.x[idx]), data.y[idx]).backward()
        opt.step()
        if on_step is not None:
            on_step(s)
    return model.params()
