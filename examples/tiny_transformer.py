"""A small transformer text classifier with token-id inputs, for `python:` references.

    dnnbench profile python:examples/tiny_transformer.py:build --batch-size 8
"""

import torch
from torch import nn

VOCAB, SEQ, DIM, HEADS, LAYERS, CLASSES = 1000, 32, 64, 4, 2, 5


class TinyTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.pos = nn.Parameter(torch.zeros(1, SEQ, DIM))
        layer = nn.TransformerEncoderLayer(DIM, HEADS, dim_feedforward=4 * DIM, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, input_ids, attention_mask=None):
        x = self.embed(input_ids) + self.pos
        padding = None if attention_mask is None else attention_mask == 0
        x = self.encoder(x, src_key_padding_mask=padding)
        return self.head(x.mean(dim=1))


def build():
    """The model and example inputs: token ids and a mask, batch dimension first."""
    ids = torch.randint(0, VOCAB, (1, SEQ))
    return TinyTransformer(), {"input_ids": ids, "attention_mask": torch.ones(1, SEQ, dtype=torch.long)}
