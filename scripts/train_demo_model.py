#!/usr/bin/python3
"""Trains a small demo signal model on a `qsig features` CSV and writes it in qsig's JSON format.

    /usr/bin/python3 scripts/train_demo_model.py --features FEATURES.csv --arch mlp|lstm \
        --window 16 --epochs 5 --seed 1 -o models/demo_mlp.json

The CSV header is `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names...>,label` with rows
in time order, interleaved across instruments (locates); label is the forward return in bps.

- MLP (8 -> 32 -> 32 -> 1, ReLU): reads the features of the last row only (window = 1).
- LSTM (input 8, hidden 16, 1 layer, linear head): reads `window` consecutive rows of the same
  locate, oldest first; the sample's label is the label of the last row.
- The last 20% of rows (in time) are held out for validation; normalization statistics come from
  the training split only and are written into the JSON, as is the label scale (folded into the
  last layer, so the model outputs bps).
- Deterministic: fixed seeds, torch.set_num_threads(1).

The exporter `export_model_json` is also used by scripts/make_test_models.py, so the C++ loader's
fixtures exercise the same code that writes production models. Format: models/README.md.
"""

import argparse
import hashlib
import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn

FORMAT = "qsig.model.fp32"
VERSION = 1
ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


def _floats(t):
    """A float32 tensor as a list of Python floats that round-trip to the same float32.

    9 significant digits always identify a float32; printing fewer digits than repr(float64)
    keeps files small."""
    arr = t.detach().to(torch.float32).reshape(-1).cpu().numpy()
    return [float(f"{v:.9g}") for v in arr.tolist()]


def sequential_to_layers(seq):
    """nn.Sequential of Linear layers, each optionally followed by ReLU/Tanh/Sigmoid."""
    layers = []
    for m in seq:
        if isinstance(m, nn.Linear):
            layers.append({
                "in": m.in_features,
                "out": m.out_features,
                "activation": "none",
                "weight": _floats(m.weight),
                "bias": _floats(m.bias) if m.bias is not None else [0.0] * m.out_features,
            })
        elif type(m) in ACTIVATIONS:
            if not layers or layers[-1]["activation"] != "none":
                raise ValueError(f"activation {m} must follow a Linear layer")
            layers[-1]["activation"] = ACTIVATIONS[type(m)]
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        else:
            raise ValueError(f"unsupported module in head: {m}")
    return layers


def lstm_to_layers(lstm):
    """nn.LSTM or nn.GRU (same parameter names; GRU gate order r, z, n) to the JSON layers."""
    if lstm.bidirectional or getattr(lstm, "proj_size", 0) or not lstm.bias:
        raise ValueError("only unidirectional nn.LSTM/nn.GRU with biases and no projection "
                         "is supported")
    out = []
    for k in range(lstm.num_layers):
        out.append({
            "input_size": lstm.input_size if k == 0 else lstm.hidden_size,
            "hidden_size": lstm.hidden_size,
            "w_ih": _floats(getattr(lstm, f"weight_ih_l{k}")),
            "w_hh": _floats(getattr(lstm, f"weight_hh_l{k}")),
            "b_ih": _floats(getattr(lstm, f"bias_ih_l{k}")),
            "b_hh": _floats(getattr(lstm, f"bias_hh_l{k}")),
        })
    return out


def export_model_json(path, *, name, arch, input_size, window, feature_names, feature_mean,
                      feature_std, head, lstm=None, extra=None):
    """Writes the model; returns the SHA-256 (hex) of the bytes written."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "arch": arch,
        "input_size": int(input_size),
        "window": int(window),
        "feature_names": list(feature_names),
        "feature_mean": [float(f"{v:.9g}") for v in np.asarray(feature_mean, np.float32)],
        "feature_std": [float(f"{v:.9g}") for v in np.asarray(feature_std, np.float32)],
    }
    if arch in ("lstm", "gru"):
        doc[arch] = lstm_to_layers(lstm)  # `lstm` is the nn.LSTM or nn.GRU module
    doc["layers"] = sequential_to_layers(head)
    if extra:
        doc["training"] = extra  # Ignored by the loader; provenance for humans.
    data = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def normalize_np(x, mean, std):
    """The runtime's normalization: (x - mean) / std, std == 0 treated as 1."""
    std = np.where(std == 0, 1.0, std).astype(np.float32)
    return ((x - mean) / std).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Training


def read_features(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    need = ["locate", "mid", "label"]
    for col in need:
        if col not in header:
            sys.exit(f"{path}: header has no '{col}' column: {header}")
    i_mid, i_label = header.index("mid"), header.index("label")
    feat_cols = list(range(i_mid + 1, i_label))
    names = [header[i] for i in feat_cols]
    if not names:
        sys.exit(f"{path}: no feature columns between 'mid' and 'label'")
    cols = [header.index("locate")] + feat_cols + [i_label]
    t0 = time.time()
    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=cols, dtype=np.float64, ndmin=2)
    locate = data[:, 0].astype(np.int64)
    x = data[:, 1:-1].astype(np.float32)
    y = data[:, -1].astype(np.float32)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if not ok.all():
        print(f"dropping {int((~ok).sum())} rows with non-finite values")
    print(f"read {len(y)} rows x {len(names)} features from {path} in {time.time() - t0:.1f}s")
    return names, locate, x, y, ok


def window_ends(locate, ok, window):
    """End-row indices of windows of `window` consecutive rows of the same locate (in row order)
    and the (n, window) row-index matrix. A window containing a bad row is dropped."""
    ends, rows = [], []
    by_locate = {}
    for i, loc in enumerate(locate.tolist()):
        by_locate.setdefault(loc, []).append(i)
    for idx in by_locate.values():
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) < window:
            continue
        mat = np.lib.stride_tricks.sliding_window_view(idx, window)
        good = ok[mat].all(axis=1)
        rows.append(mat[good])
        ends.append(mat[good, -1])
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, window), np.int64)
    ends = np.concatenate(ends)
    rows = np.concatenate(rows)
    order = np.argsort(ends, kind="stable")
    return ends[order], rows[order]


def ic(pred, y):
    """Information coefficient: Pearson correlation of predictions with realized labels."""
    if len(y) < 2 or np.std(pred) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(pred, y)[0, 1])


class LstmModel(nn.Module):
    def __init__(self, input_size, hidden):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=1, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, 1))

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", required=True, help="CSV written by `qsig features`")
    ap.add_argument("--arch", choices=["mlp", "lstm"], required=True)
    ap.add_argument("--window", type=int, default=16, help="LSTM timesteps (MLP uses 1)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--max-train", type=int, default=100_000,
                    help="subsample at most this many training samples (keeps it fast)")
    ap.add_argument("--max-val", type=int, default=50_000)
    ap.add_argument("--label-clip-quantile", type=float, default=0.005,
                    help="clip labels to the [q, 1-q] quantiles of the training labels")
    ap.add_argument("--name", default=None, help="model name (default demo_<arch>)")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    window = args.window if args.arch == "lstm" else 1
    if window < 1:
        sys.exit("--window must be >= 1")

    names, locate, x, y, ok = read_features(args.features)
    n_rows = len(y)
    split_row = int(n_rows * 0.8)  # Rows before this index are training rows (time order).

    ends, rows = window_ends(locate, ok, window)
    train_mask = ends < split_row
    tr_rows, va_rows = rows[train_mask], rows[~train_mask]
    if len(tr_rows) < 100 or len(va_rows) < 10:
        sys.exit(f"not enough samples: {len(tr_rows)} train, {len(va_rows)} validation windows")
    if len(tr_rows) > args.max_train:
        tr_rows = tr_rows[np.sort(rng.choice(len(tr_rows), args.max_train, replace=False))]
    if len(va_rows) > args.max_val:
        va_rows = va_rows[np.sort(rng.choice(len(va_rows), args.max_val, replace=False))]

    train_row_mask = np.zeros(n_rows, bool)
    train_row_mask[:split_row] = True
    train_row_mask &= ok
    mean = x[train_row_mask].mean(axis=0).astype(np.float32)
    std = x[train_row_mask].std(axis=0).astype(np.float32)
    std = np.where(std > 0, std, 1.0).astype(np.float32)  # Constant feature: runtime uses 1 too.
    xn = normalize_np(x, mean, std)

    y_tr_raw = y[tr_rows[:, -1]]
    lo, hi = np.quantile(y_tr_raw, [args.label_clip_quantile, 1 - args.label_clip_quantile])
    y_scale = float(np.clip(y_tr_raw, lo, hi).std()) or 1.0
    print(f"train {len(tr_rows)} / validation {len(va_rows)} samples, window {window}; "
          f"label clipped to [{lo:.3f}, {hi:.3f}] bps, scale {y_scale:.4f} bps")

    def batch_x(r):
        t = torch.from_numpy(xn[r])  # (n, window, features)
        return t[:, -1, :] if args.arch == "mlp" else t

    y_tr = torch.from_numpy((np.clip(y_tr_raw, lo, hi) / y_scale).astype(np.float32))
    y_va_raw = y[va_rows[:, -1]]

    n_feat = len(names)
    if args.arch == "mlp":
        model = nn.Sequential(nn.Linear(n_feat, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                              nn.Linear(32, 1))
    else:
        model = LstmModel(n_feat, 16)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()

    def predict(r):
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(r), 4096):
                out.append(model(batch_x(r[i:i + 4096])).reshape(-1))
        model.train()
        return torch.cat(out).numpy() * y_scale

    t_start = time.time()
    val_ic = float("nan")
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(tr_rows)).numpy()
        total, count = 0.0, 0
        for i in range(0, len(perm), args.batch):
            b = perm[i:i + args.batch]
            pred = model(batch_x(tr_rows[b])).reshape(-1)
            loss = loss_fn(pred, y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            count += len(b)
        val_ic = ic(predict(va_rows), y_va_raw)
        print(f"epoch {epoch}/{args.epochs}  train_loss {total / count:.5f}  "
              f"val_ic {val_ic:+.4f}  ({time.time() - t_start:.1f}s)", flush=True)

    # Fold the label scale into the last Linear so the exported model outputs bps.
    head = model if args.arch == "mlp" else model.head
    last = [m for m in head if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(y_scale)
        last.bias.mul_(y_scale)

    extra = {
        "features_csv": args.features,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_samples": int(len(tr_rows)),
        "val_samples": int(len(va_rows)),
        "label_clip_bps": [float(lo), float(hi)],
        "val_ic": None if math.isnan(val_ic) else round(val_ic, 6),
    }
    digest = export_model_json(
        args.output, name=args.name or f"demo_{args.arch}", arch=args.arch, input_size=n_feat,
        window=window, feature_names=names, feature_mean=mean, feature_std=std, head=head,
        lstm=model.lstm if args.arch == "lstm" else None, extra=extra)
    print(f"wrote {args.output} (sha256 {digest})")


if __name__ == "__main__":
    main()
