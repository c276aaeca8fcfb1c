#!/usr/bin/python3
"""Writes the model-import fixtures of tests/models_io/data/ (needs python3-torch, Debian 1.13).

Run with Debian's Python (another python3 may come first on PATH without python3-torch):

    /usr/bin/python3 scripts/make_import_fixtures.py [--out tests/models_io/data]

For each small model (fixed seeds) it writes
    <name>.pt                 torch.jit.script / trace + torch.jit.save (TorchScript)
    <name>.opset13.onnx       torch.onnx.export, opset 13
    <name>.opset17.onnx       torch.onnx.export, opset 17
    <name>.expected.json      {"window", "input_size", "inputs": N*window*input_size floats (oldest
                              step first, row-major), "outputs": N floats}: PyTorch's FP32 outputs
The unsupported models (LayerNorm, Conv1d) get the model files only. Floats are written with 9
significant digits, which identify a float32 exactly. On the same torch version the .onnx and
.expected.json files are reproduced byte for byte; the .pt zip archives differ in metadata only.
"""
import argparse
import json
import os

import torch
from torch import nn

N_SAMPLES = 8


class LstmHead(nn.Module):
    """Stacked LSTM (batch_first) with a Linear head on the last step: out[:, -1, :]."""

    def __init__(self, i, h, layers):
        super().__init__()
        self.lstm = nn.LSTM(i, h, num_layers=layers, batch_first=True)
        self.head = nn.Linear(h, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


class LstmHiddenHead(nn.Module):
    """Sequence-first LSTM whose head reads h_n[-1] (ONNX: the LSTM node's Y_h output)."""

    def __init__(self, i, h):
        super().__init__()
        self.lstm = nn.LSTM(i, h)
        self.head = nn.Sequential(nn.Linear(h, 6), nn.Tanh(), nn.Linear(6, 1))

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


class LstmHeadAllSteps(nn.Module):
    """The head runs on every step (ONNX: MatMul + Add on a 3-D tensor), then the last step."""

    def __init__(self, i, h):
        super().__init__()
        self.lstm = nn.LSTM(i, h, batch_first=True)
        self.head = nn.Linear(h, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)[:, -1]


class GruHead(nn.Module):
    def __init__(self, i, h):
        super().__init__()
        self.gru = nn.GRU(i, h, batch_first=True)
        self.head = nn.Linear(h, 1)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1, :])


class ConvNet(nn.Module):
    def __init__(self, i):
        super().__init__()
        self.conv = nn.Conv1d(i, 4, 3)
        self.head = nn.Linear(4, 1)

    def forward(self, x):  # x: [B, T, F]
        y = self.conv(x.transpose(1, 2))
        return self.head(y[:, :, -1])


def models():
    """(name, module, window, input_size, supported)."""
    out = []
    torch.manual_seed(11)
    out.append(("lstm2_head", LstmHead(5, 8, 2), 6, 5, True))
    torch.manual_seed(12)
    out.append(("lstm_hn_head", LstmHiddenHead(4, 7), 5, 4, True))
    torch.manual_seed(13)
    out.append(("lstm_head_all_steps", LstmHeadAllSteps(3, 6), 4, 3, True))
    torch.manual_seed(14)
    out.append(("gru_head", GruHead(5, 8), 6, 5, True))
    torch.manual_seed(15)
    out.append(("mlp", nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                                     nn.Linear(12, 1), nn.Sigmoid()), 1, 6, True))
    torch.manual_seed(16)
    out.append(("mlp_layernorm", nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(),
                                               nn.Linear(8, 1)), 1, 6, False))
    torch.manual_seed(17)
    out.append(("conv1d", ConvNet(3), 5, 3, False))
    return out


def fmt(v):
    return float("%.9g" % v)


def sample_input(name, window, input_size, n):
    g = torch.Generator().manual_seed(1000 + sum(map(ord, name)))
    if window == 1:
        return torch.randn(n, input_size, generator=g)
    return torch.randn(n, window, input_size, generator=g)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "models_io", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    for name, m, window, input_size, supported in models():
        m.eval()
        x = sample_input(name, window, input_size, N_SAMPLES)
        # TorchScript: script keeps the module tree (and control flow) as written.
        scripted = torch.jit.script(m)
        scripted.save(os.path.join(args.out, name + ".pt"))
        # The sequence-first model takes [T, B, F]; every fixture stores oldest-first windows.
        seq_first = name == "lstm_hn_head"
        xin = x.transpose(0, 1).contiguous() if seq_first else x
        for opset in (13, 17):
            torch.onnx.export(m, (xin,), os.path.join(args.out, "%s.opset%d.onnx" % (name, opset)),
                              opset_version=opset, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {1 if seq_first else 0: "batch"}},
                              do_constant_folding=True)
        if not supported:
            continue
        y = m(xin).reshape(-1)
        doc = {
            "model": name,
            "torch": torch.__version__,
            "window": window,
            "input_size": input_size,
            "seq_first": seq_first,
            "inputs": [fmt(v) for v in x.reshape(-1).tolist()],
            "outputs": [fmt(v) for v in y.tolist()],
        }
        with open(os.path.join(args.out, name + ".expected.json"), "w") as f:
            json.dump(doc, f, indent=None, separators=(",", ":"))
            f.write("\n")
    # A truncated ONNX file (half of a valid one) for the corrupt-file tests.
    with open(os.path.join(args.out, "mlp.opset17.onnx"), "rb") as f:
        data = f.read()
    with open(os.path.join(args.out, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(args.out, "mlp.pt"), "rb") as f:
        data = f.read()
    with open(os.path.join(args.out, "truncated.pt"), "wb") as f:
        f.write(data[: len(data) // 2])


if __name__ == "__main__":
    main()
