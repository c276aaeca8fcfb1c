#!/usr/bin/python3
"""Writes the FP32-vs-PyTorch fixtures of tests/models (run with Debian's /usr/bin/python3).

    /usr/bin/python3 scripts/make_test_models.py [-o tests/models/data]

For each small model built with fixed seeds, writes <name>.json (qsig's model format, through the
same exporter as scripts/train_demo_model.py) and <name>.expected.json with raw input windows
and PyTorch's outputs, normalization included:
  {"model": "<name>.json", "sha256": "...", "window": W, "input_size": I,
   "inputs": [[W*I floats, oldest timestep first], ...], "outputs": [...]}
The models cover every activation, a 2-layer stacked LSTM, a window-1 LSTM, an MLP reading the
last timestep of a longer window, a feature with std == 0 (treated as 1), the LSTM-A shape of
issue 3 (input 32, hidden 64, window 32) and GRUs (gate order r, z, n).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_demo_model import export_model_json, normalize_np  # noqa: E402

FEATURES = ["ret_1", "ret_10", "ret_50", "spread_bps", "imbalance_l1", "imbalance_l5",
            "trade_flow", "microprice_dev_bps"]


def round_f32(a):
    """float32 values exactly as the JSON writer prints them (9 significant digits)."""
    return np.array([float(f"{v:.9g}") for v in np.asarray(a, np.float32).reshape(-1)],
                    np.float32).reshape(np.shape(a))


class LstmHead(nn.Module):
    def __init__(self, lstm, head):
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def write_case(out_dir, name, arch, window, model, head, lstm, n_inputs, gen, gain,
               features=FEATURES):
    n_feat = len(features)
    # Default init gives nearly constant outputs; a gain spreads them so that any wrong weight,
    # gate or activation moves the output far beyond the 1e-5 tolerance.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    mean = round_f32(gen.normal(0, 2, n_feat))
    std = round_f32(np.abs(gen.normal(1, 0.5, n_feat)) + 0.1)
    std[3] = 0.0  # A constant feature: the runtime must treat std 0 as 1.
    digest = export_model_json(
        os.path.join(out_dir, f"{name}.json"), name=name, arch=arch, input_size=n_feat,
        window=window, feature_names=features, feature_mean=mean, feature_std=std, head=head,
        lstm=lstm)
    raw = round_f32(mean + np.where(std == 0, 1, std) * gen.normal(0, 1, (n_inputs, window, n_feat)))
    xn = torch.from_numpy(normalize_np(raw, mean, std))
    with torch.no_grad():
        y = model(xn[:, -1, :] if arch == "mlp" else xn).reshape(-1).numpy()
    expected = {
        "model": f"{name}.json",
        "sha256": digest,
        "window": window,
        "input_size": n_feat,
        "inputs": [[float(v) for v in w.reshape(-1)] for w in raw],
        "outputs": [float(v) for v in y],
    }
    with open(os.path.join(out_dir, f"{name}.expected.json"), "w") as f:
        json.dump(expected, f, allow_nan=False, separators=(",", ":"))
    print(f"{name}: {n_inputs} cases, outputs in [{y.min():.4f}, {y.max():.4f}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                               "models", "data")
    ap.add_argument("-o", "--output-dir", default=default_out)
    args = ap.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    torch.set_num_threads(1)
    n_feat = len(FEATURES)

    torch.manual_seed(1)
    gen = np.random.default_rng(1)
    mlp = nn.Sequential(nn.Linear(n_feat, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                        nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 1))
    write_case(args.output_dir, "mlp_small", "mlp", 3, mlp, mlp, None, 32, gen, 2.5)

    torch.manual_seed(2)
    gen = np.random.default_rng(2)
    lstm = nn.LSTM(n_feat, 12, num_layers=2, batch_first=True)
    head = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 1))
    write_case(args.output_dir, "lstm_small", "lstm", 7, LstmHead(lstm, head), head, lstm, 32,
               gen, 2.5)

    torch.manual_seed(3)
    gen = np.random.default_rng(3)
    lstm1 = nn.LSTM(n_feat, 5, num_layers=1, batch_first=True)
    head1 = nn.Sequential(nn.Linear(5, 1), nn.Tanh())
    write_case(args.output_dir, "lstm_window1", "lstm", 1, LstmHead(lstm1, head1), head1, lstm1,
               16, gen, 2.0)

    wide = [f"f{k}" for k in range(32)]
    torch.manual_seed(4)
    gen = np.random.default_rng(4)
    lstm_a = nn.LSTM(32, 64, num_layers=1, batch_first=True)
    head_a = nn.Sequential(nn.Linear(64, 1))
    write_case(args.output_dir, "lstm_a", "lstm", 32, LstmHead(lstm_a, head_a), head_a, lstm_a, 16,
               gen, 1.5, features=wide)

    torch.manual_seed(5)
    gen = np.random.default_rng(5)
    gru_a = nn.GRU(32, 64, num_layers=1, batch_first=True)
    head_g = nn.Sequential(nn.Linear(64, 1))
    write_case(args.output_dir, "gru_a", "gru", 32, LstmHead(gru_a, head_g), head_g, gru_a, 16,
               gen, 1.5, features=wide)

    torch.manual_seed(6)
    gen = np.random.default_rng(6)
    gru2 = nn.GRU(n_feat, 12, num_layers=2, batch_first=True)
    head2 = nn.Sequential(nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 1))
    write_case(args.output_dir, "gru_small", "gru", 7, LstmHead(gru2, head2), head2, gru2, 32,
               gen, 2.5)


if __name__ == "__main__":
    main()
