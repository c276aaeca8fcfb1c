#!/usr/bin/python3
"""Writes the QDQ ONNX import fixtures tests/fixtures/qdq_* (python3-onnx, python3-torch, numpy).

Run with Debian's Python (another python3 may come first on PATH without these packages):

    /usr/bin/python3 scripts/make_qdq_fixtures.py [--out tests/fixtures]

The fixtures are written independently of qsig: with onnx.helper (the layouts onnxruntime's
quantize_static(..., quant_format=QuantFormat.QDQ) produces) and with torch.onnx.export of a
model with PyTorch fake-quant ops (what a QAT export produces). Expected values are computed here
with numpy / torch; the C++ test (tests/models_io/onnx_qdq_import_test.cc) only reads them.

    qdq_mlp_ort.onnx        6 -> 8 -> 4 -> 1 MLP, onnxruntime QDQ layout: u8 input QDQ;
                            layer 0 s8 per-channel (axis 0) Gemm weight, int32 bias behind a
                            DequantizeLinear, u8 QDQ with zero point 0 after it (onnxruntime has
                            removed the Relu there); layer 1 u8 per-tensor weight (zero point 131)
                            + Tanh, then an s8 activation QDQ; layer 2 MatMul with an s8 [in, out]
                            weight per channel on axis 1, + Add; an output QDQ.
    qdq_mlp_torch.onnx      5 -> 7 -> 1 MLP from torch.onnx.export (opset 13) of fake-quant ops:
                            float weights through QuantizeLinear -> DequantizeLinear (per-channel
                            s8 and per-tensor u8), u8 activation QDQ on both layer inputs.
    qdq_lstm.onnx           LSTM (4 -> 6, window 5, time-major) whose W and R are s8 initializers
                            behind DequantizeLinear (per channel, axis 1), u8 QDQ on X, and a
                            Linear head whose float weight goes through QuantizeLinear ->
                            DequantizeLinear.
    qdq_gru.onnx            GRU (3 -> 5, window 4, linear_before_reset 1) with s8 per-tensor W
                            and u8 per-tensor R (zero point 119) behind DequantizeLinear, and an
                            s8 QDQ (zero point -3) on X.
    <name>.expected.json    {"window", "input_size", "inputs", "outputs": FP32 outputs of the
                            dequantized model (no activation rounding), "qdq_outputs": outputs
                            with the QDQ pairs on layer inputs applied (as onnxruntime would
                            compute them, without the final output QDQ),
                            "input_ranges": per QuantizableLayers entry [min, max] or null,
                            "weights": per layer (qsig order: lstm.w_ih, lstm.w_hh, then each
                            Linear weight, out x in, PyTorch gate order) the dequantized values}
    qdq_tanh_after_qdq.onnx a u8 QDQ with zero point 0 between a Gemm and a Tanh (a range for
                            the Tanh's input side, not a Relu onnxruntime removed).
    qdq_refuse_*.onnx       unsupported quantized graphs the importer must refuse by node name:
                            qlinearmatmul, matmulinteger, convinteger, dynamic (DynamicQuantize-
                            Linear), nonconst_scale, block (opset 21 block_size), per_channel_act,
                            zero_scale.
Floats are written with 9 significant digits, which identify a float32 exactly.
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_SAMPLES = 16


def f32(x):
    return np.asarray(x, dtype=np.float32)


def fmt(v):
    return [float("%.9g" % x) for x in np.asarray(v, dtype=np.float32).ravel()]


def quantize(x, scale, zp, lo, hi, axis=None):
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zp)."""
    x = f32(x)
    s, z = f32(scale), np.asarray(zp, dtype=np.int64)
    if axis is not None and s.size > 1:
        shape = [1] * x.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), np.broadcast_to(z, s.shape).reshape(shape)
    return np.clip(np.rint(x / s).astype(np.int64) + z, lo, hi)


def dequantize(q, scale, zp, axis=None):
    """ONNX DequantizeLinear in float32: (q - zp) * scale."""
    q = np.asarray(q, dtype=np.int64)
    s, z = f32(scale), np.asarray(zp, dtype=np.int64)
    if axis is not None and s.size > 1:
        shape = [1] * q.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), np.broadcast_to(z, s.shape).reshape(shape)
    return (q - z).astype(np.float32) * s


def qdq(x, scale, zp, lo, hi):
    return dequantize(quantize(x, scale, zp, lo, hi), scale, zp)


def act_range(scale, zp, lo, hi):
    s = np.float32(scale)
    return [float("%.9g" % (np.float32(lo - zp) * s)), float("%.9g" % (np.float32(hi - zp) * s))]


def sym_scale(w, axis_rows):
    """Per-row symmetric s8 scales (max |w| / 127) of a matrix, rows on `axis_rows`."""
    m = np.abs(w).max(axis=1 - axis_rows)
    return f32(np.maximum(m, 1e-8) / 127.0)


def save(model, out, name):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, name + ".onnx"))


def write_expected(out, name, doc):
    with open(os.path.join(out, name + ".expected.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


def init(name, arr, dtype=None):
    a = np.asarray(arr)
    if dtype is not None:
        a = a.astype(dtype)
    return numpy_helper.from_array(a, name)


def make_mlp_ort(out, rng):
    """The layout onnxruntime's QDQ quantizer writes for Gemm / MatMul layers."""
    x = f32(rng.normal(size=(N_SAMPLES, 6)))
    w0 = f32(rng.normal(scale=0.5, size=(8, 6)))
    b0 = f32(rng.normal(scale=0.1, size=8))
    w1 = f32(rng.normal(scale=0.5, size=(4, 8)))
    b1 = f32(rng.normal(scale=0.1, size=4))
    w2 = f32(rng.normal(scale=0.5, size=(4, 1)))  # MatMul layout: [in, out].
    b2 = f32([0.05])

    xs, xz = np.float32(0.025), 120  # u8 input range [-3.0, 3.375].
    s0 = sym_scale(w0, 0)
    q0 = quantize(w0, s0, np.zeros(8, np.int64), -127, 127, axis=0)
    bs0 = f32(xs * s0)  # onnxruntime's int32 bias: scale = input scale * weight scale.
    bq0 = np.rint(b0 / bs0).astype(np.int64)
    h0s, h0z = np.float32(0.02), 0  # u8, zero point 0: clamps at 0 (Relu removed).
    s1 = np.float32(0.011)
    z1 = 131
    q1 = quantize(w1, s1, z1, 0, 255)
    h1s, h1z = np.float32(1.0 / 127.0), 5  # s8 activation QDQ after Tanh.
    s2 = f32(np.maximum(np.abs(w2).max(axis=0), 1e-8) / 127.0)  # per output column, axis 1.
    q2 = quantize(w2, s2, np.zeros(1, np.int64), -127, 127, axis=1)
    os_, oz = np.float32(0.01), 128

    dw0, dw1, dw2 = dequantize(q0, s0, 0, axis=0), dequantize(q1, s1, z1), dequantize(q2, s2, 0, 1)
    db0 = dequantize(bq0, bs0, 0, axis=0)

    def forward(x, act_qdq):
        h = qdq(x, xs, xz, 0, 255) if act_qdq else x
        h = np.maximum(h @ dw0.T + db0, 0.0)
        h = qdq(h, h0s, h0z, 0, 255) if act_qdq else h
        h = np.tanh(h @ dw1.T + b1)
        h = qdq(h, h1s, h1z, -128, 127) if act_qdq else h
        return h @ dw2 + b2  # The output QDQ is left out: qsig's head output is not rounded.

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["w0_q", "w0_scale", "w0_zp"], ["w0"], name="w0_DQ",
                         axis=0),
        helper.make_node("DequantizeLinear", ["b0_q", "b0_scale", "b0_zp"], ["b0"], name="b0_DQ",
                         axis=0),
        helper.make_node("Gemm", ["x_dq", "w0", "b0"], ["h0"], name="fc0", transB=1),
        helper.make_node("QuantizeLinear", ["h0", "h0_scale", "h0_zp"], ["h0_q"], name="h0_Q"),
        helper.make_node("DequantizeLinear", ["h0_q", "h0_scale", "h0_zp"], ["h0_dq"],
                         name="h0_DQ"),
        helper.make_node("DequantizeLinear", ["w1_q", "w1_scale", "w1_zp"], ["w1"], name="w1_DQ"),
        helper.make_node("Gemm", ["h0_dq", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Tanh", ["h1"], ["h1_act"], name="tanh1"),
        helper.make_node("QuantizeLinear", ["h1_act", "h1_scale", "h1_zp"], ["h1_q"], name="h1_Q"),
        helper.make_node("DequantizeLinear", ["h1_q", "h1_scale", "h1_zp"], ["h1_dq"],
                         name="h1_DQ"),
        helper.make_node("DequantizeLinear", ["w2_q", "w2_scale", "w2_zp"], ["w2"], name="w2_DQ",
                         axis=1),
        helper.make_node("MatMul", ["h1_dq", "w2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["h2b"], name="fc2_bias"),
        helper.make_node("QuantizeLinear", ["h2b", "y_scale", "y_zp"], ["y_q"], name="y_Q"),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zp"], ["y"], name="y_DQ"),
    ]
    inits = [
        init("x_scale", xs, np.float32), init("x_zp", xz, np.uint8),
        init("w0_q", q0, np.int8), init("w0_scale", s0), init("w0_zp", np.zeros(8), np.int8),
        init("b0_q", bq0, np.int32), init("b0_scale", bs0), init("b0_zp", np.zeros(8), np.int32),
        init("h0_scale", h0s, np.float32), init("h0_zp", h0z, np.uint8),
        init("w1_q", q1, np.uint8), init("w1_scale", s1, np.float32), init("w1_zp", z1, np.uint8),
        init("b1", b1),
        init("h1_scale", h1s, np.float32), init("h1_zp", h1z, np.int8),
        init("w2_q", q2, np.int8), init("w2_scale", s2), init("w2_zp", np.zeros(1), np.int8),
        init("b2", b2),
        init("y_scale", os_, np.float32), init("y_zp", oz, np.uint8),
    ]
    g = helper.make_graph(nodes, "qdq_mlp_ort",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="qsig make_qdq_fixtures.py (onnxruntime QDQ layout)")
    m.ir_version = 7
    save(m, out, "qdq_mlp_ort")
    write_expected(out, "qdq_mlp_ort", {
        "window": 1, "input_size": 6, "inputs": fmt(x),
        "outputs": fmt(forward(x, False)), "qdq_outputs": fmt(forward(x, True)),
        "input_ranges": [act_range(xs, xz, 0, 255), act_range(h0s, h0z, 0, 255),
                         act_range(h1s, h1z, -128, 127)],
        "weights": [fmt(dw0), fmt(dw1), fmt(dw2.T)],
        "biases": [fmt(db0), fmt(b1), fmt(b2)],
    })


def make_mlp_torch(out):
    """torch.onnx.export of a QAT-style model: fake-quant weights and activations."""
    import torch
    from torch import nn

    torch.manual_seed(3)

    class QatMlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc0 = nn.Linear(5, 7)
            self.fc1 = nn.Linear(7, 1)
            self.act_qdq = True
            w0 = self.fc0.weight.detach()
            self.s0 = (w0.abs().amax(dim=1) / 127.0).clamp(min=1e-8)
            self.w1_scale = float(self.fc1.weight.detach().abs().max() / 100.0)

        def forward(self, x):
            if self.act_qdq:
                x = torch.fake_quantize_per_tensor_affine(x, 0.02, 128, 0, 255)
            w0 = torch.fake_quantize_per_channel_affine(
                self.fc0.weight, self.s0, torch.zeros(7, dtype=torch.int32), 0, -128, 127)
            h = torch.relu(torch.nn.functional.linear(x, w0, self.fc0.bias))
            if self.act_qdq:
                h = torch.fake_quantize_per_tensor_affine(h, 0.015, 0, 0, 255)
            w1 = torch.fake_quantize_per_tensor_affine(self.fc1.weight, self.w1_scale, 100, 0, 255)
            return torch.nn.functional.linear(h, w1, self.fc1.bias)

    model = QatMlp().eval()
    x = torch.randn(N_SAMPLES, 5)
    path = os.path.join(out, "qdq_mlp_torch.onnx")
    torch.onnx.export(model, (x,), path, opset_version=13, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    onnx.checker.check_model(onnx.load(path))
    with torch.no_grad():
        qdq_out = model(x).numpy()
        model.act_qdq = False
        fp_out = model(x).numpy()
        w0 = torch.fake_quantize_per_channel_affine(
            model.fc0.weight, model.s0, torch.zeros(7, dtype=torch.int32), 0, -128, 127).numpy()
        w1 = torch.fake_quantize_per_tensor_affine(model.fc1.weight, model.w1_scale, 100, 0,
                                                   255).numpy()
    write_expected(out, "qdq_mlp_torch", {
        "window": 1, "input_size": 5, "inputs": fmt(x.numpy()),
        "outputs": fmt(fp_out), "qdq_outputs": fmt(qdq_out),
        "input_ranges": [act_range(0.02, 128, 0, 255), act_range(0.015, 0, 0, 255)],
        "weights": [fmt(w0), fmt(w1)],
    })


def make_lstm(out, rng):
    """LSTM with s8 W / R behind DequantizeLinear, u8 QDQ on X, head weight through Q -> DQ."""
    T, I, H = 5, 4, 6
    x = f32(rng.normal(size=(N_SAMPLES, T, I)))  # Stored batch-major, oldest step first.
    W = f32(rng.normal(scale=0.4, size=(1, 4 * H, I)))  # ONNX gate order i, o, f, c.
    R = f32(rng.normal(scale=0.4, size=(1, 4 * H, H)))
    B = f32(rng.normal(scale=0.1, size=(1, 8 * H)))
    sW = f32(np.abs(W[0]).max(axis=1) / 127.0)
    sR = f32(np.abs(R[0]).max(axis=1) / 127.0)
    qW = quantize(W, sW, np.zeros(4 * H, np.int64), -127, 127, axis=1)
    qR = quantize(R, sR, np.zeros(4 * H, np.int64), -127, 127, axis=1)
    dW, dR = dequantize(qW, sW, 0, axis=1), dequantize(qR, sR, 0, axis=1)
    wh = f32(rng.normal(scale=0.5, size=(1, H)))
    bh = f32([0.1])
    sh = np.float32(np.abs(wh).max() / 127.0)
    dwh = dequantize(quantize(wh, sh, 0, -128, 127), sh, 0)
    xs, xz = np.float32(0.03), 128

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    def forward(x, act_qdq):
        xx = qdq(x, xs, xz, 0, 255) if act_qdq else x
        xx = xx.astype(np.float64)
        n = xx.shape[0]
        h = np.zeros((n, H))
        c = np.zeros((n, H))
        for t in range(T):
            g = xx[:, t, :] @ dW[0].T.astype(np.float64) + h @ dR[0].T.astype(np.float64) \
                + B[0, :4 * H] + B[0, 4 * H:]
            i, o, f, cc = (sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), sigmoid(g[:, 2 * H:3 * H]),
                           np.tanh(g[:, 3 * H:]))
            c = f * c + i * cc
            h = o * np.tanh(c)
        return h @ dwh.T.astype(np.float64) + bh

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["W_q", "W_scale", "W_zp"], ["W"], name="W_DQ",
                         axis=1),
        helper.make_node("DequantizeLinear", ["R_q", "R_scale", "R_zp"], ["R"], name="R_DQ",
                         axis=1),
        helper.make_node("LSTM", ["x_dq", "W", "R", "B"], ["Y", "Y_h"], name="lstm",
                         hidden_size=H),
        helper.make_node("Squeeze", ["Y_h", "axes0"], ["h_last"], name="squeeze_dir"),
        helper.make_node("QuantizeLinear", ["wh", "wh_scale", "wh_zp"], ["wh_q"], name="wh_Q"),
        helper.make_node("DequantizeLinear", ["wh_q", "wh_scale", "wh_zp"], ["wh_dq"],
                         name="wh_DQ"),
        helper.make_node("Gemm", ["h_last", "wh_dq", "bh"], ["y"], name="head", transB=1),
    ]
    inits = [
        init("x_scale", xs, np.float32), init("x_zp", xz, np.uint8),
        init("W_q", qW, np.int8), init("W_scale", sW), init("W_zp", np.zeros(4 * H), np.int8),
        init("R_q", qR, np.int8), init("R_scale", sR), init("R_zp", np.zeros(4 * H), np.int8),
        init("B", B), init("axes0", [0], np.int64),
        init("wh", wh), init("wh_scale", sh, np.float32), init("wh_zp", 0, np.int8),
        init("bh", bh),
    ]
    g = helper.make_graph(
        nodes, "qdq_lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, "batch", I])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="qsig make_qdq_fixtures.py")
    m.ir_version = 7
    save(m, out, "qdq_lstm")
    # qsig layout: PyTorch gate order i, f, g, o from ONNX i, o, f, c.
    order = [0, 2, 3, 1]

    def torch_order(w):
        return np.concatenate([w[k * H:(k + 1) * H] for k in order], axis=0)

    write_expected(out, "qdq_lstm", {
        "window": T, "input_size": I, "inputs": fmt(x),
        "outputs": fmt(forward(x, False)), "qdq_outputs": fmt(forward(x, True)),
        "input_ranges": [act_range(xs, xz, 0, 255), None],
        "weights": [fmt(torch_order(dW[0])), fmt(torch_order(dR[0])), fmt(dwh)],
    })


def make_gru(out, rng):
    """GRU (linear_before_reset = 1, as PyTorch) with s8 per-tensor W and u8 per-tensor R (zero
    point 119) behind DequantizeLinear, an s8 QDQ on X, and a float head."""
    T, I, H = 4, 3, 5
    x = f32(rng.normal(size=(N_SAMPLES, T, I)))
    W = f32(rng.normal(scale=0.4, size=(1, 3 * H, I)))  # ONNX gate order z, r, h.
    R = f32(rng.normal(scale=0.4, size=(1, 3 * H, H)))
    B = f32(rng.normal(scale=0.1, size=(1, 6 * H)))
    sW = np.float32(np.abs(W).max() / 127.0)
    qW = quantize(W, sW, 0, -128, 127)
    sR, zR = np.float32(0.006), 119
    qR = quantize(R, sR, zR, 0, 255)
    dW, dR = dequantize(qW, sW, 0), dequantize(qR, sR, zR)
    wh = f32(rng.normal(scale=0.5, size=(1, H)))
    bh = f32([-0.05])
    xs, xz = np.float32(0.025), -3

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))

    def forward(x, act_qdq):
        xx = (qdq(x, xs, xz, -128, 127) if act_qdq else x).astype(np.float64)
        h = np.zeros((xx.shape[0], H))
        w, r = dW[0].astype(np.float64), dR[0].astype(np.float64)
        wb, rb = B[0, :3 * H], B[0, 3 * H:]
        for t in range(T):
            gx = xx[:, t, :] @ w.T + wb
            gh = h @ r.T + rb
            z = sigmoid(gx[:, :H] + gh[:, :H])
            rr = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[:, 2 * H:] + rr * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
        return h @ wh.T.astype(np.float64) + bh

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["W_q", "W_scale", "W_zp"], ["W"], name="W_DQ"),
        helper.make_node("DequantizeLinear", ["R_q", "R_scale", "R_zp"], ["R"], name="R_DQ"),
        helper.make_node("GRU", ["x_dq", "W", "R", "B"], ["Y", "Y_h"], name="gru",
                         hidden_size=H, linear_before_reset=1),
        helper.make_node("Squeeze", ["Y_h", "axes0"], ["h_last"], name="squeeze_dir"),
        helper.make_node("Gemm", ["h_last", "wh", "bh"], ["y"], name="head", transB=1),
    ]
    inits = [
        init("x_scale", xs, np.float32), init("x_zp", xz, np.int8),
        init("W_q", qW, np.int8), init("W_scale", sW, np.float32), init("W_zp", 0, np.int8),
        init("R_q", qR, np.uint8), init("R_scale", sR, np.float32), init("R_zp", zR, np.uint8),
        init("B", B), init("axes0", [0], np.int64), init("wh", wh), init("bh", bh),
    ]
    g = helper.make_graph(
        nodes, "qdq_gru",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, "batch", I])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="qsig make_qdq_fixtures.py")
    m.ir_version = 7
    save(m, out, "qdq_gru")
    order = [1, 0, 2]  # PyTorch r, z, n from ONNX z, r, h.

    def torch_order(w):
        return np.concatenate([w[k * H:(k + 1) * H] for k in order], axis=0)

    write_expected(out, "qdq_gru", {
        "window": T, "input_size": I, "inputs": fmt(x),
        "outputs": fmt(forward(x, False)), "qdq_outputs": fmt(forward(x, True)),
        "input_ranges": [act_range(xs, xz, -128, 127), None],
        "weights": [fmt(torch_order(dW[0])), fmt(torch_order(dR[0])), fmt(wh)],
    })


def make_tanh_after_qdq(out):
    """A u8 QDQ with zero point 0 between a Gemm and a Tanh: a range, not a removed Relu."""
    w0 = f32(np.linspace(-1, 1, 12).reshape(3, 4))
    w1 = f32(np.linspace(-0.5, 0.5, 3).reshape(1, 3))
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["h"], name="fc0", transB=1),
        helper.make_node("QuantizeLinear", ["h", "s", "z"], ["hq"], name="h_Q"),
        helper.make_node("DequantizeLinear", ["hq", "s", "z"], ["hdq"], name="h_DQ"),
        helper.make_node("Tanh", ["hdq"], ["ht"], name="tanh0"),
        helper.make_node("Gemm", ["ht", "w1", "b1"], ["y"], name="fc1", transB=1),
    ]
    inits = [init("w0", w0), init("b0", f32([0.1, 0.2, 0.3])), init("s", 0.01, np.float32),
             init("z", 0, np.uint8), init("w1", w1), init("b1", f32([0.0]))]
    g = helper.make_graph(nodes, "qdq_tanh_after_qdq",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="qsig make_qdq_fixtures.py")
    m.ir_version = 7
    save(m, out, "qdq_tanh_after_qdq")


def make_refusals(out):
    """Small graphs the importer must refuse, each naming its node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])
    w = f32(np.linspace(-1, 1, 4).reshape(4, 1))
    common = [init("s", 0.05, np.float32), init("z", 128, np.uint8), init("ws", 0.01, np.float32),
              init("wz", 0, np.int8), init("wq", np.arange(4).reshape(4, 1), np.int8),
              init("w", w), init("ys", 0.1, np.float32), init("yz", 0, np.uint8)]

    def model(name, nodes, extra=(), opset=13, ir=7, check=True):
        g = helper.make_graph(nodes, name, [x], [y], list(common) + list(extra))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="qsig make_qdq_fixtures.py")
        m.ir_version = ir
        if check:
            onnx.checker.check_model(m)
        onnx.save(m, os.path.join(out, "qdq_refuse_" + name + ".onnx"))

    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_Q")
    model("qlinearmatmul", [
        q, helper.make_node("QLinearMatMul", ["xq", "s", "z", "wq", "ws", "wz", "ys", "yz"],
                            ["yq"], name="fc_qlinear"),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="y_DQ")])
    model("matmulinteger", [
        q, helper.make_node("MatMulInteger", ["xq", "wq", "z", "wz"], ["acc"], name="fc_integer"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["accf", "ys"], ["y"], name="rescale")])
    model("convinteger", [
        q, helper.make_node("ConvInteger", ["xq", "cw", "z"], ["acc"], name="conv_integer"),
        helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT, name="cast")],
        extra=[init("cw", np.ones((1, 4, 1)), np.uint8)], check=False)
    model("dynamic", [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="x_dynQ"),
        helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"], name="fc_integer"),
        helper.make_node("Cast", ["acc"], ["y"], to=TensorProto.FLOAT, name="cast")],
        check=False)
    # A scale that is not an initializer (computed, here by an Identity of a constant).
    model("nonconst_scale", [
        helper.make_node("Identity", ["s"], ["s_copy"], name="scale_copy"),
        helper.make_node("QuantizeLinear", ["x", "s_copy", "z"], ["xq"], name="x_Q_computed"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="x_DQ"),
        helper.make_node("MatMul", ["xdq", "w"], ["y"], name="fc")])
    # Opset 21 block quantization of the weight (block_size 2 along axis 0).
    model("block", [
        helper.make_node("DequantizeLinear", ["wq", "bs", "bz"], ["wdq"], name="w_DQ_block",
                         axis=0, block_size=2),
        helper.make_node("MatMul", ["x", "wdq"], ["y"], name="fc")],
        extra=[init("bs", f32([[0.01], [0.02]])), init("bz", np.zeros((2, 1)), np.int8)],
        opset=21, ir=10, check=False)
    # Per-channel quantization of an activation (4 scales on the feature axis).
    model("per_channel_act", [
        helper.make_node("QuantizeLinear", ["x", "s4", "z4"], ["xq"], name="x_Q_per_channel",
                         axis=1),
        helper.make_node("DequantizeLinear", ["xq", "s4", "z4"], ["xdq"], name="x_DQ", axis=1),
        helper.make_node("MatMul", ["xdq", "w"], ["y"], name="fc")],
        extra=[init("s4", f32([0.1, 0.2, 0.3, 0.4])), init("z4", [128] * 4, np.uint8)])
    # A zero scale: no range.
    model("zero_scale", [
        helper.make_node("QuantizeLinear", ["x", "s0", "z"], ["xq"], name="x_Q_zero"),
        helper.make_node("DequantizeLinear", ["xq", "s0", "z"], ["xdq"], name="x_DQ_zero"),
        helper.make_node("MatMul", ["xdq", "w"], ["y"], name="fc")],
        extra=[init("s0", 0.0, np.float32)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20261122)
    make_mlp_ort(args.out, rng)
    make_mlp_torch(args.out)
    make_lstm(args.out, rng)
    make_gru(args.out, rng)
    make_tanh_after_qdq(args.out)
    make_refusals(args.out)


if __name__ == "__main__":
    main()
