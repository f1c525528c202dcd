"""The learned parts of the NAS-literature strategies (:mod:`metanas.search.literature`), in plain torch.

* :class:`Controller`: NAS-RL's LSTM that emits an architecture decision by decision (Zoph & Le, 2017).
* :class:`SurrogateEnsemble`: PNAS's score predictor, an ensemble of MLPs on one-hot decisions (Liu et al., 2018).
* :class:`EncoderPredictorDecoder`: NAO's encoder, performance predictor and decoder (Luo et al., 2018).

Every module is built under ``torch.random.fork_rng`` with the strategy's seed, so a strategy is deterministic for
a seed and leaves the global generator alone.
"""

from __future__ import annotations

import torch
from torch import nn


def seeded(seed: int, build):
    """``build()`` with the global torch generator seeded to ``seed`` (and restored after)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class Controller(nn.Module):
    """An LSTM cell run once per decision: its input is the embedding of the previous decision's value (a learned
    start vector for the first), its hidden state goes through that decision's own softmax head."""

    def __init__(self, choices: list[int], hidden: int = 32):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(hidden))
        self.embed = nn.ModuleList(nn.Embedding(c, hidden) for c in choices)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in choices)
        self.cell = nn.LSTMCell(hidden, hidden)

    def _steps(self, x: list[int] | None, generator: torch.Generator | None):
        """Yields ``(logits, value)`` per decision: ``value`` is ``x[d]`` (teacher forcing) or a sample."""
        inp, state = self.start[None], None
        for d, head in enumerate(self.heads):
            state = self.cell(inp, state)
            logits = head(state[0])[0]
            v = x[d] if x is not None and d < len(x) else int(torch.multinomial(logits.softmax(0), 1, generator=generator))
            yield logits, v
            inp = self.embed[d](torch.tensor([v]))

    def sample(self, generator: torch.Generator) -> list[int]:
        with torch.no_grad():
            return [v for _, v in self._steps(None, generator)]

    def log_prob_entropy(self, x: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        logp, ent = torch.zeros(()), torch.zeros(())
        for logits, v in self._steps(x, None):
            lp = logits.log_softmax(0)
            logp, ent = logp + lp[v], ent - (lp.exp() * lp).sum()
        return logp, ent

    def distribution(self, prefix: list[int]) -> torch.Tensor:
        """The probabilities of decision ``len(prefix)`` given the earlier decisions ``prefix``."""
        with torch.no_grad():
            for d, (logits, _) in enumerate(self._steps(prefix, None)):
                if d == len(prefix):
                    return logits.softmax(0)
        raise IndexError(f"no decision after {len(prefix)}")


def one_hot(choices: list[int], xs: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(xs), sum(choices))
    offsets = [sum(choices[:d]) for d in range(len(choices))]
    for i, x in enumerate(xs):
        for o, v in zip(offsets, x):
            out[i, o + v] = 1
    return out


class SurrogateEnsemble:
    """``members`` MLPs on one-hot decision vectors, each fitted (MSE, Adam) on all ``(x, score)`` pairs from its own
    initialisation; the prediction is their mean (PNAS ranks with an ensemble of 5 predictors)."""

    def __init__(self, choices: list[int], seed: int, members: int = 5, hidden: int = 64, steps: int = 200,
                 lr: float = 1e-2):
        self.choices, self.steps, self.lr, self.fits = choices, steps, lr, 0
        n = sum(choices)
        self.models = [seeded(seed * 1000 + m, lambda: nn.Sequential(nn.Linear(n, hidden), nn.ReLU(),
                                                                     nn.Linear(hidden, 1)))
                       for m in range(members)]

    def fit(self, xs: list[list[int]], scores: list[float]) -> "SurrogateEnsemble":
        X, y = one_hot(self.choices, xs), torch.tensor(scores, dtype=torch.float32)
        self.mu, self.sigma = float(y.mean()), float(y.std()) if len(y) > 1 and float(y.std()) > 0 else 1.0
        y = (y - self.mu) / self.sigma
        for model in self.models:
            opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=1e-4)
            for _ in range(self.steps):
                opt.zero_grad()
                nn.functional.mse_loss(model(X)[:, 0], y).backward()
                opt.step()
        self.fits += 1
        return self

    def predict(self, xs: list[list[int]]) -> torch.Tensor:
        X = one_hot(self.choices, xs)
        with torch.no_grad():
            return self.mu + self.sigma * torch.stack([m(X)[:, 0] for m in self.models]).mean(0)


class EncoderPredictorDecoder(nn.Module):
    """NAO's three parts. The encoder embeds each decision (its own token range) and runs an LSTM over the sequence;
    the architecture's continuous representation is the mean of its hidden states. The predictor is an MLP on that
    vector; the decoder an LSTM started from it that emits the decisions one by one (teacher forcing in training,
    greedy when decoding), fed the embedding of the previous decision and the representation."""

    def __init__(self, choices: list[int], hidden: int = 32):
        super().__init__()
        self.choices = choices
        self.offsets = [sum(choices[:d]) for d in range(len(choices))]
        self.tokens = nn.Embedding(sum(choices) + 1, hidden)  # + a start token for the decoder
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.predictor = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.decoder = nn.LSTMCell(2 * hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in choices)

    def _tokens(self, xs: torch.Tensor) -> torch.Tensor:
        return xs + torch.tensor(self.offsets)

    def encode(self, xs: torch.Tensor) -> torch.Tensor:
        """``[n, decisions]`` long -> ``[n, hidden]``, unit norm."""
        states, _ = self.encoder(self.tokens(self._tokens(xs)))
        return nn.functional.normalize(states.mean(1), dim=-1)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z)[:, 0]

    def decode_logits(self, z: torch.Tensor, xs: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per decision, ``[n, choices]`` logits; the previous decision fed in is ``xs``'s (teacher forcing) or the
        greedy choice."""
        n = z.shape[0]
        prev = self.tokens(torch.full((n,), sum(self.choices), dtype=torch.long))
        state, out = (z, torch.zeros_like(z)), []
        for d, head in enumerate(self.heads):
            state = self.decoder(torch.cat([prev, z], -1), state)
            logits = head(state[0])
            out.append(logits)
            v = xs[:, d] if xs is not None else logits.argmax(-1)
            prev = self.tokens(v + self.offsets[d])
        return out

    def decode(self, z: torch.Tensor) -> list[list[int]]:
        with torch.no_grad():
            return torch.stack([l.argmax(-1) for l in self.decode_logits(z)], 1).tolist()

    def loss(self, xs: torch.Tensor, y: torch.Tensor, trade_off: float = 0.8) -> torch.Tensor:
        """``trade_off * predictor MSE + (1 - trade_off) * reconstruction cross-entropy`` (NAO's 0.8)."""
        z = self.encode(xs)
        recon = sum(nn.functional.cross_entropy(l, xs[:, d]) for d, l in enumerate(self.decode_logits(z, xs)))
        return trade_off * nn.functional.mse_loss(self.predict(z), y) + (1 - trade_off) * recon / len(self.heads)
