#!/usr/bin/python3
"""Writes models/demo_lstm.json as a TorchScript file (torch.jit.save), for the server test that
serves a .pt model through the qsig-torch helper.

    /usr/bin/python3 scripts/make_demo_torchscript.py -o tests/integration/data/demo_lstm.pt

A TorchScript file carries no normalization, so the JSON model's (x - mean) / std is folded into
the LSTM's input weights and bias: W' = W / std, b' = b - W (mean / std). The script checks that
the TorchScript module and the JSON model (computed here with the normalization applied
separately) agree within 1e-5 on random windows before writing.
"""

import argparse
import json
import sys

import torch
from torch import nn


class DemoLstm(nn.Module):
    def __init__(self, input_size, hidden):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/demo_lstm.json")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    doc = json.load(open(a.model))
    if doc["arch"] != "lstm" or len(doc["lstm"]) != 1 or len(doc["layers"]) != 1:
        sys.exit("expected a 1-layer LSTM with a single Linear head")
    n, ly, head = doc["input_size"], doc["lstm"][0], doc["layers"][0]
    hidden = ly["hidden_size"]
    mean = torch.tensor(doc["feature_mean"], dtype=torch.float32)
    std = torch.tensor(doc["feature_std"], dtype=torch.float32)
    std = torch.where(std == 0, torch.ones_like(std), std)
    w_ih = torch.tensor(ly["w_ih"], dtype=torch.float32).reshape(4 * hidden, n)
    b_ih = torch.tensor(ly["b_ih"], dtype=torch.float32)

    torch.manual_seed(0)
    ref = DemoLstm(n, hidden)
    folded = DemoLstm(n, hidden)
    with torch.no_grad():
        for m in (ref, folded):
            m.lstm.weight_hh_l0.copy_(torch.tensor(ly["w_hh"]).reshape(4 * hidden, hidden))
            m.lstm.bias_hh_l0.copy_(torch.tensor(ly["b_hh"]))
            m.head.weight.copy_(torch.tensor(head["weight"]).reshape(1, hidden))
            m.head.bias.copy_(torch.tensor(head["bias"]))
        ref.lstm.weight_ih_l0.copy_(w_ih)
        ref.lstm.bias_ih_l0.copy_(b_ih)
        folded.lstm.weight_ih_l0.copy_(w_ih / std)
        folded.lstm.bias_ih_l0.copy_(b_ih - w_ih @ (mean / std))
    x = mean + std * torch.randn(64, doc["window"], n)
    with torch.no_grad():
        want = ref((x - mean) / std)
        got = folded(x)
    err = (want - got).abs().max().item()
    if err > 1e-5 * max(1.0, want.abs().max().item()):
        sys.exit(f"folding the normalization changed the output by {err}")
    torch.jit.save(torch.jit.script(folded.eval()), a.output)
    print(f"wrote {a.output} (window {doc['window']}, max |folded - json| {err:.2g})")


if __name__ == "__main__":
    main()
