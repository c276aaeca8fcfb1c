#!/usr/bin/python3
"""Writes the TorchScript "as people save it" fixtures of tests/models_io/data/ (python3-torch).

    /usr/bin/python3 scripts/make_torchscript_fixtures.py [--out tests/models_io/data]

For each small model (fixed seeds), both ways people save TorchScript:
    ts_<name>.traced.pt      torch.jit.trace + torch.jit.save (module attributes such as
                             num_layers / hidden_size are dropped: only the graph records them)
    ts_<name>.scripted.pt    torch.jit.script + torch.jit.save
    ts_<name>.expected.json  {"window", "input_size", "inputs": N*window*input_size floats (oldest
                             step first, row-major), "outputs": N floats}: PyTorch's FP32 outputs
    ts_<name>.csv            the same windows' rows as a plain CSV (header = feature names f0..,
                             plus columns qsig ignores and a label), one instrument per window,
                             instrument column `sym`, time column `t`
    ts_<name>.npy            the rows of the first window only (window x input_size, float32)
    ts_<name>.npz            the same as x (float64) with y (its label on the last row); np.savez,
                             np.savez_compressed for the MLPs
and traced refusal fixtures: ts_refuse_bidirectional.pt, ts_refuse_proj.pt, ts_refuse_packed.pt.
Floats are written with 9 significant digits, which identify a float32 exactly.
"""
import argparse
import json
import os

import numpy as np
import torch
from torch import nn

N_SAMPLES = 6


class LstmHnHead(nn.Module):
    """Scriptable h_n[-1] reader for LSTM (the tuple state)."""

    def __init__(self, rnn, head):
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x):
        _, (h, _) = self.rnn(x)
        return self.head(h[-1])


class GruHnHead(nn.Module):
    def __init__(self, rnn, head):
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x):
        _, h = self.rnn(x)
        return self.head(h[-1])


class OutLastBatchFirst(nn.Module):
    def __init__(self, rnn, head):
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


class OutLastSeqFirst(nn.Module):
    def __init__(self, rnn, head):
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-1])


class Mlp(nn.Module):
    """A user MLP module with named layers and activations as modules."""

    def __init__(self, i):
        super().__init__()
        self.fc1 = nn.Linear(i, 16)
        self.act1 = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(16, 8)
        self.act2 = nn.Tanh()
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.act2(self.fc2(self.drop(self.act1(self.fc1(x))))))


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
        p = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        _, (h, _) = self.rnn(p)
        return self.head(h[-1])


def head(h, tanh=True):
    if tanh:
        return nn.Sequential(nn.Linear(h, 6), nn.Tanh(), nn.Linear(6, 1))
    return nn.Linear(h, 1)


def models():
    """(name, module, window, input_size, batch_first)."""
    out = []
    torch.manual_seed(21)
    out.append(("mlp", Mlp(6), 1, 6, True))
    torch.manual_seed(22)
    out.append(("mlp_seq", nn.Sequential(nn.Linear(5, 12), nn.Sigmoid(), nn.Linear(12, 1)), 1, 5,
                True))
    torch.manual_seed(23)
    out.append(("lstm_bf", OutLastBatchFirst(nn.LSTM(5, 8, batch_first=True), head(8, False)),
                6, 5, True))
    torch.manual_seed(24)
    out.append(("lstm_sf_hn", LstmHnHead(nn.LSTM(4, 7), head(7)), 5, 4, False))
    torch.manual_seed(25)
    # The model: 2 layers, 17 inputs, hidden 48, window 24, Tanh MLP head, dropout.
    out.append(("lstm_stacked", OutLastBatchFirst(
        nn.LSTM(17, 48, num_layers=2, batch_first=True, dropout=0.2), head(48)), 24, 17, True))
    torch.manual_seed(26)
    out.append(("lstm_nobias_sf", OutLastSeqFirst(nn.LSTM(4, 6, bias=False), head(6, False)),
                5, 4, False))
    torch.manual_seed(27)
    out.append(("gru_bf", OutLastBatchFirst(nn.GRU(5, 8, batch_first=True), head(8)), 6, 5, True))
    torch.manual_seed(28)
    out.append(("gru_stacked_sf_hn", GruHnHead(
        nn.GRU(4, 6, num_layers=2, bias=False, dropout=0.1), head(6, False)), 5, 4, False))
    torch.manual_seed(29)
    out.append(("gru_stacked_bf_hn", GruHnHead(
        nn.GRU(3, 5, num_layers=3, batch_first=True), head(5)), 4, 3, True))
    return out


def fmt(v):
    return float("%.9g" % v)


def sample_input(name, window, input_size, n):
    g = torch.Generator().manual_seed(2000 + sum(map(ord, name)))
    return torch.randn(n, window, input_size, generator=g)


def to_module_input(x, window, batch_first):
    if window == 1:
        return x[:, 0, :].contiguous()
    return x if batch_first else x.transpose(0, 1).contiguous()


def write_tables(out, name, x, y):
    """Plain CSV: one instrument per sample window (rows oldest first), interleaved by time."""
    n, window, f = x.shape
    names = ["f%d" % j for j in range(f)]
    lines = ["t,sym," + ",".join(reversed(names)) + ",note,label"]  # Columns out of order.
    for step in range(window):
        for i in range(n):
            vals = [repr(fmt(v)) for v in x[i, step].tolist()]
            label = repr(fmt(y[i])) if step == window - 1 else ""
            lines.append("%d,S%d,%s,x,%s" % (step * 1000 + i, i, ",".join(reversed(vals)), label))
    with open(os.path.join(out, "ts_%s.csv" % name), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    first = x[0].numpy()
    np.save(os.path.join(out, "ts_%s.npy" % name), first.astype(np.float32))
    # .npz: x (float64 here) and y (the label on the last row, NaN before); MLPs compressed.
    labels = np.full((window,), np.nan)
    labels[-1] = y[0]
    save = np.savez_compressed if window == 1 else np.savez
    save(os.path.join(out, "ts_%s.npz" % name), x=first.astype(np.float64), y=labels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "models_io", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    for name, m, window, input_size, batch_first in models():
        m.eval()
        x = sample_input(name, window, input_size, N_SAMPLES)
        xin = to_module_input(x, window, batch_first)
        # Trace on a different batch size than the tests use: the batch must stay dynamic.
        traced = torch.jit.trace(m, (to_module_input(x[:3], window, batch_first),))
        traced.save(os.path.join(args.out, "ts_%s.traced.pt" % name))
        torch.jit.script(m).save(os.path.join(args.out, "ts_%s.scripted.pt" % name))
        y = m(xin).reshape(-1)
        assert torch.allclose(traced(xin).reshape(-1), y)
        doc = {
            "model": name,
            "torch": torch.__version__,
            "window": window,
            "input_size": input_size,
            "batch_first": batch_first,
            "inputs": [fmt(v) for v in x.reshape(-1).tolist()],
            "outputs": [fmt(v) for v in y.tolist()],
        }
        with open(os.path.join(args.out, "ts_%s.expected.json" % name), "w") as f:
            json.dump(doc, f, indent=None, separators=(",", ":"))
            f.write("\n")
        write_tables(args.out, name, x, [fmt(v) for v in y.tolist()])
    torch.manual_seed(30)
    refuse = {
        "bidirectional": OutLastBatchFirst(nn.LSTM(3, 4, batch_first=True, bidirectional=True),
                                           nn.Linear(8, 1)),
        "proj": LstmHnHead(nn.LSTM(3, 6, batch_first=True, proj_size=2), nn.Linear(2, 1)),
        "packed": Packed(),
    }
    for name, m in refuse.items():
        m.eval()
        traced = torch.jit.trace(m, (torch.randn(2, 4, 3),), check_trace=False)
        traced.save(os.path.join(args.out, "ts_refuse_%s.pt" % name))


if __name__ == "__main__":
    main()
