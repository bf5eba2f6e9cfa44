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


class PlainBlock(nn.Module):
    """`veriml.training.block` in plain PyTorch: nn.Linear, nn.LayerNorm, softmax attention, autograd."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        from veriml.training.block import LINEARS, _dims

        self.cfg = cfg
        dims = _dims(cfg)
        self.lin = nn.ModuleDict({name: nn.Linear(dims[name][1], dims[name][0]) for name in LINEARS})
        self.ln = nn.ModuleDict({name: nn.LayerNorm(cfg.d_model) for name in ("ln1", "ln2")})
        self.pos = nn.Parameter(torch.zeros(cfg.tokens, cfg.d_model))
        with torch.no_grad():
            for name, t in init_params(cfg).items():
                self._param(name).copy_(t)

    def _param(self, name: str) -> nn.Parameter:
        if name == "pos":
            return self.pos
        layer, kind = name.split(".")
        return getattr((self.ln if layer.startswith("ln") else self.lin)[layer], kind)

    def forward(self, x: Tensor) -> Tensor:
        T, L = self.cfg.tokens, self.lin
        h0 = L["emb"](x.reshape(x.shape[0], T, -1)) + self.pos
        n1 = self.ln["ln1"](h0)
        q, k, v = L["q"](n1), L["k"](n1), L["v"](n1)
        p = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)
        h1 = h0 + L["o"](p @ v)
        h2 = h1 + L["ff2"](torch.relu(L["ff1"](self.ln["ln2"](h1))))
        return L["head"](h2.mean(dim=1))

    def params(self) -> dict[str, Tensor]:
        return {name: self._param(name).detach().clone() for name in self.cfg.param_names()}


def plain_model(cfg: TrainConfig) -> PlainMLP | PlainBlock:
    return PlainBlock(cfg) if cfg.arch == "block" else PlainMLP(cfg)


def plain_train(
    cfg: TrainConfig, data: Dataset, steps: int, on_step: Callable[[int], None] | None = None
) -> dict[str, Tensor]:
    """Train `steps` steps with torch.optim and return the parameters."""
    torch.manual_seed(cfg.seed)  # only dropout draws from torch's generator here
    model = plain_model(cfg)
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
