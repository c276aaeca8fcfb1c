#!/usr/bin/python3
"""A researcher's path into production through the real `qsig` command, end to end:

    qsig features -> qsig train -> qsig qat -> qsig quantize --mixed auto -> qsig inspect
        -> qsig predict

plus the hand-over to the qsig-torch helper found beside qsig (no environment variable): a
TorchScript model with an unsupported module is refused with qsig-torch's message.

    lifecycle_test.py --qsig build/server/qsig --config config/demo.yaml --data tests/models_io/data
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile


def run(args, expect=0, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if p.returncode != expect:
        sys.exit(f"FAIL: {' '.join(args)}\nexit {p.returncode}, expected {expect}\n"
                 f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p.stdout + p.stderr


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qsig", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    qsig = a.qsig
    with tempfile.TemporaryDirectory(prefix="qsig_lifecycle_") as d:
        feat = os.path.join(d, "feat.csv")
        run([qsig, "features", "-c", a.config, "-o", feat, "--messages", "200000"])

        model = os.path.join(d, "lstm.json")
        out = run([qsig, "train", "--input", feat, "--arch", "lstm", "--window", "8",
                   "--epochs", "2", "-o", model, "--report", model + ".report.json"])
        check("train epoch 2/2" in out, "qsig train prints a progress line per epoch")
        rep = json.load(open(model + ".report.json"))
        check(rep["val"]["ic_pearson"] > 0.2,
              f"the trained LSTM predicts the simulator's forward return "
              f"(validation IC {rep['val']['ic_pearson']:.3f})")

        tuned = os.path.join(d, "lstm_qat.json")
        out = run([qsig, "qat", "--model", model, "--input", feat, "--epochs", "1",
                   "-o", tuned, "--report", tuned + ".report.json"])
        check("PTQ vs QAT" in out and "QAT INT8" in out, "qsig qat prints PTQ and QAT side by side")
        q = json.load(open(tuned + ".report.json"))
        for col in ("fp32", "ptq_int8", "qat_fp32", "qat_int8"):
            check(q[col]["ic_pearson"] is not None, f"QAT report has the {col} column")
        check(q["qat_int8"]["rmse_over_rms_vs_fp32"] < 0.05,
              f"QAT INT8 stays within 5% of its FP32 ({q['qat_int8']['rmse_over_rms_vs_fp32']:.4f})")

        art = os.path.join(d, "lstm_qat.qsig")
        out = run([qsig, "quantize", "--model", tuned, "--calib", feat, "--mixed", "auto",
                   "--budget", "0.01", "-o", art])
        r = json.load(open(art + ".report.json"))
        check(r["mixed_precision"]["budget_met"], "quantize --mixed auto meets a 1% budget")
        check(r["accuracy"]["sign_agreement"] > 0.98,
              f"INT8 artifact agrees in sign with FP32 ({r['accuracy']['sign_agreement']:.4f})")

        out = run([qsig, "inspect", art])
        check("verified    rebuilds the validated INT8 runtime" in out and "LSTM(16)" in out,
              "qsig inspect shows the artifact's plan and verifies it")
        meta = json.loads(run([qsig, "inspect", art, "--json"]))
        check(meta["artifact"]["source_path"] == tuned and meta["verification"]["verified"],
              "qsig inspect --json records where the artifact came from")

        pred = os.path.join(d, "pred.csv")
        out = run([qsig, "predict", "--model", art, "--input", feat, "--precision", "int8",
                   "-o", pred])
        rows = list(csv.reader(open(pred)))
        check(rows[0] == ["locate", "msg_seq", "exchange_ts_ns", "output"] and
              sum(1 for x in rows[1:] if x[3] != "") > 1000,
              "qsig predict runs the artifact over the feature file")

        out = run([qsig, "predict", "--model", os.path.join(a.data, "mlp_layernorm.pt"),
                   "--input", feat, "-o", pred], expect=1)
        check("LayerNorm" in out and "not supported" in out,
              "a TorchScript model qsig cannot run is refused by the qsig-torch helper, by name")

        out = run([qsig, "train", "--input", feat, "--arch", "cnn", "-o", model], expect=1)
        check("--arch" in out, "qsig train names a bad option")
    print("PASS")


if __name__ == "__main__":
    main()
