"""Tiny torch models for the compression tests (random weights, seeded)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tiny_bert(layers: int = 3, seed: int = 0):
    """A 3-layer, 4-head, 32-wide BERT sentence encoder (mean pooling + L2 norm), eager attention."""
    from transformers import BertConfig, BertModel

    from hasten.zoo.minilm import encoder_class

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)
    cfg._attn_implementation = "eager"
    return encoder_class()(BertModel(cfg)).eval()


def token_inputs(batch: int = 2, seq: int = 12, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (batch, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


class ResCatNet(nn.Module):
    """Conv+BN stem, a residual block, a concatenation, a depthwise conv, pooling and a Linear head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.b1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b2 = nn.Conv2d(8, 8, 3, padding=1)
        self.side = nn.Conv2d(8, 4, 1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.head = nn.Conv2d(12, 6, 1)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        s = F.relu(self.bn(self.stem(x)))
        y = F.relu(self.bn1(self.b1(s)))
        y = self.b2(y) + s
        z = torch.cat([y, self.side(y)], dim=1)
        z = F.relu(self.head(self.dw(z)))
        z = F.max_pool2d(z, 2)
        return self.fc(torch.flatten(z, 1))


def res_cat_net(seed: int = 0) -> ResCatNet:
    torch.manual_seed(seed)
    net = ResCatNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (net.bn, net.bn1):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return net.eval()


def images(n: int = 4, seed: int = 0, shape=(3, 8, 8)) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))
