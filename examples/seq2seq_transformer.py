"""The PyTorch tutorial model ("Language Translation with nn.Transformer"), batch-first.

Its `state_dict()` names are exactly the transformer_rs checkpoint format (see
the checkpoint spec), so a model trained with this module loads with
`transformer_rs.Transformer.load` / `from_state_dict` unchanged.
Needs torch; transformer_rs itself never does.
"""

import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table `pos_embedding [max_len, d_model]` to `x [B, T, d_model]`."""

    def __init__(self, d_model, maxlen=512):
        super().__init__()
        den = torch.exp(-torch.arange(0, d_model, 2) * math.log(10000) / d_model)
        pos = torch.arange(0, maxlen).reshape(maxlen, 1)
        pe = torch.zeros((maxlen, d_model))
        pe[:, 0::2] = torch.sin(pos * den)
        pe[:, 1::2] = torch.cos(pos * den)
        self.register_buffer("pos_embedding", pe)

    def forward(self, x):
        return x + self.pos_embedding[: x.size(1)].unsqueeze(0)


class TokenEmbedding(nn.Module):
    """`tokens [B, T]` -> `[B, T, d_model]`, scaled by sqrt(d_model)."""

    def __init__(self, vocab, d_model):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.d_model = d_model

    def forward(self, tokens):
        return self.embedding(tokens.long()) * math.sqrt(self.d_model)


class Seq2SeqTransformer(nn.Module):
    """`cfg` holds the config.json keys of the checkpoint format."""

    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.Transformer(
            d_model=cfg["d_model"],
            nhead=cfg["n_heads"],
            num_encoder_layers=cfg["n_encoder_layers"],
            num_decoder_layers=cfg["n_decoder_layers"],
            dim_feedforward=cfg["d_ff"],
            dropout=dropout,
            activation=cfg["activation"],
            layer_norm_eps=cfg["layer_norm_eps"],
            batch_first=True,
            norm_first=cfg["norm_first"],
        )
        self.generator = nn.Linear(cfg["d_model"], cfg["tgt_vocab_size"])
        self.src_tok_emb = TokenEmbedding(cfg["src_vocab_size"], cfg["d_model"])
        self.tgt_tok_emb = TokenEmbedding(cfg["tgt_vocab_size"], cfg["d_model"])
        self.positional_encoding = PositionalEncoding(cfg["d_model"], cfg["max_len"])

    def encode(self, src, src_pad):
        """`src [B, S]`, `src_pad [B, S]` (True = padding) -> memory `[B, S, d_model]`."""
        x = self.positional_encoding(self.src_tok_emb(src))
        return self.transformer.encoder(x, src_key_padding_mask=src_pad)

    def decode(self, tgt, memory, tgt_pad, src_pad):
        """`tgt [B, T]` -> logits `[B, T, tgt_vocab_size]`, causal."""
        T = tgt.size(1)
        causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        y = self.positional_encoding(self.tgt_tok_emb(tgt))
        out = self.transformer.decoder(
            y,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.generator(out)

    def forward(self, src, tgt, src_pad, tgt_pad):
        return self.decode(tgt, self.encode(src, src_pad), tgt_pad, src_pad)

    @torch.inference_mode()
    def greedy(self, src, src_pad, max_new, bos, eos):
        """Argmax decoding -> `[B, 1 + steps]` token ids starting with `bos`; pad after eos."""
        memory = self.encode(src, src_pad)
        ys = torch.full((src.size(0), 1), bos, dtype=torch.long)
        done = torch.zeros(src.size(0), dtype=torch.bool)
        for _ in range(max_new):
            nxt = self.decode(ys, memory, None, src_pad)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.cfg["pad_id"]), nxt)
            ys = torch.cat([ys, nxt[:, None]], 1)
            done |= nxt == eos
            if bool(done.all()):
                break
        return ys
