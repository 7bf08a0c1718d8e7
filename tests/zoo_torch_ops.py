"""PyTorch models that exercise the patterns exported code is full of (tensor plumbing,
run-time normalisations, smooth activations, resizing, constants in the data path, L2
normalisation, attention); part of the zoo in tests/zoo_torch_models.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShapeOps(nn.Module):
    """The tensor plumbing exported code is full of: permute, transpose, view, reshape,
    slicing, chunk, cat, squeeze/unsqueeze, flatten, mean over (2, 3)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(8 + 8 * 6, 5)

    def forward(self, x):  # x [N, 4, 8, 6]
        y = F.relu(self.conv(x))
        a, b = torch.chunk(y, 2, dim=1)                      # [N, 4, 8, 6] each
        z = torch.cat([b, a], dim=1)[:, :, 1:-1]              # [N, 8, 6, 6]
        t = self.fc(z.permute(0, 2, 1, 3))                    # Linear over the last axis
        t = t.transpose(1, 2).reshape(t.size(0), 8, -1)      # [N, 8, 36]
        u = t.unsqueeze(1).squeeze(1).mean(-1)                # [N, 8]
        g = z.mean(dim=(2, 3))                                # [N, 8]
        h = torch.cat([g * u, t[:, :, ::6].flatten(1)], dim=1)
        return self.out(h)


class NormActs(nn.Module):
    """Normalisations and smooth activations: LayerNorm, GroupNorm, GELU (erf and tanh),
    SiLU, Softplus, Hardsigmoid, Mish-free."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):  # x [N, 3, 6, 6]
        y = F.silu(self.gn(self.conv(x)))
        y = F.softplus(y) - F.hardsigmoid(y)
        v = self.ln(y.mean(dim=(2, 3)))
        v = F.gelu(self.fc1(v))
        return self.fc2(F.gelu(v, approximate="tanh"))


class ResizePool(nn.Module):
    """Decoder-ish plumbing: adaptive average pooling to a non-global size, F.interpolate
    (nearest, x2), F.pad, MaxPool with ceil_mode, nn.Upsample."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):  # x [N, 2, 6, 6]
        y = F.adaptive_avg_pool2d(F.relu(self.c1(x)), 3)                         # 6 -> 3
        y = F.interpolate(y, scale_factor=2, mode="nearest")                      # 3 -> 6
        y = self.pool(F.pad(y, (1, 1, 1, 1)))                                     # 8 -> 4 (ceil)
        y = self.up(F.relu(self.c2(y)))                                            # 2 -> 4
        return self.fc(y.reshape(y.shape[0], -1))


class ConstOps(nn.Module):
    """Constants mixed into the data path: an added buffer, torch.where with a constant mask,
    a scaled constant, a constant concatenated as a channel."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("offset", torch.randn(1, 6, 10, generator=g))
        self.register_buffer("mask", torch.rand(1, 1, 10, generator=g) > 0.3)
        self.conv = nn.Conv1d(7, 6, 3, padding=1)
        self.fc = nn.Linear(60, 4)

    def forward(self, x):  # x [N, 6, 10]
        y = x + self.offset * 0.5
        y = torch.where(self.mask, y, torch.zeros_like(y))
        pos = torch.arange(10, dtype=torch.float32).view(1, 1, 10).expand(x.shape[0], 1, 10) / 10
        y = F.relu(self.conv(torch.cat([y, pos], dim=1)))
        return self.fc(y.flatten(1))


class Embedder(nn.Module):
    """Speaker/keyword embedding: Conv2d padding="same" (even kernel), reflect padding,
    dilation, Hardtanh, clamp, AdaptiveMaxPool2d, max over an axis, torch.stack, and an
    L2-normalised output (F.normalize)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, (4, 4), padding="same")
        self.c2 = nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect", dilation=1)
        self.c3 = nn.Conv1d(6, 8, 3, padding=2, dilation=2)
        self.fc = nn.Linear(16, 8)

    def forward(self, x):  # x [N, 1, 8, 10]
        y = F.hardtanh(self.c1(x), -2.0, 2.0)
        y = torch.clamp(self.c2(y), min=0.0)
        a = F.adaptive_max_pool2d(y, 1).flatten(1)            # [N, 6]
        t = self.c3(y.max(dim=2)[0])                          # [N, 8, 10]
        s = torch.stack([t.mean(-1), t.amax(-1)], dim=1)      # [N, 2, 8]
        e = self.fc(s.flatten(1)) + F.pad(a, (0, 2))
        return F.normalize(e, p=2.0, dim=1)


class TinyAttention(nn.Module):
    """Keyword transformer block (KWT-style): patch Linear, learned position embedding,
    nn.MultiheadAttention, LayerNorm, GELU MLP, class token read with x[:, 0]."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.proj = nn.Linear(10, d)
        self.pos = nn.Parameter(torch.randn(1, 7, d) * 0.1)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 4)

    def forward(self, x):  # x [N, 6, 10]
        h = self.proj(x)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        q = self.ln1(h)
        h = h + self.attn(q, q, q, need_weights=False)[0]
        h = h + self.mlp(self.ln2(h))
        return self.head(h[:, 0])
