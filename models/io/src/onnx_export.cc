// ExportOnnxQdq (qsig/models/io/onnx_export.h): a .qsig artifact as a QDQ ONNX model.
#include "qsig/models/io/onnx_export.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "onnx/onnx_pb.h"  // Defines ONNX_API, then includes onnx-ml.pb.h (ONNX_ML).
#include "qsig/models/io/artifact.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/quantize.h"

namespace qsig::models::io {
namespace {

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* g) : g_(g) {}

  onnx::NodeProto* Node(const std::string& op, std::vector<std::string> in,
                        std::vector<std::string> out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(absl::StrCat(op, "_", g_->node_size()));
    for (auto& s : in) n->add_input(s);
    for (auto& s : out) n->add_output(s);
    return n;
  }

  static void IntAttr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }

  void Floats(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
    onnx::TensorProto* t = Init(name, onnx::TensorProto::FLOAT, dims);
    for (float x : v) t->add_float_data(x);
  }

  template <typename T>
  void Raw(const std::string& name, onnx::TensorProto::DataType type, std::vector<int64_t> dims,
           const std::vector<T>& v) {
    onnx::TensorProto* t = Init(name, type, dims);
    std::string bytes(v.size() * sizeof(T), '\0');
    if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
    t->set_raw_data(bytes);
  }

 private:
  onnx::TensorProto* Init(const std::string& name, onnx::TensorProto::DataType type,
                          const std::vector<int64_t>& dims) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    return t;
  }

  onnx::GraphProto* g_;
};

void SetValueInfo(onnx::ValueInfoProto* v, const std::string& name, int64_t cols) {
  v->set_name(name);
  onnx::TypeProto_Tensor* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("batch");
  tt->mutable_shape()->add_dim()->set_dim_value(cols);
}

// The QuantizeLinear / DequantizeLinear pair on `x` (u8 with `zp`, or symmetric s16), named
// after `p`; returns the dequantized tensor's name.
std::string AddQdq(GraphBuilder& b, const std::string& x, const std::string& p, bool s16,
                   float scale, int32_t zp) {
  const std::string xs = p + ".input_scale", xz = p + ".input_zero_point";
  b.Floats(xs, {}, {scale});
  if (s16) {
    b.Raw<int16_t>(xz, onnx::TensorProto::INT16, {}, {0});
  } else {
    b.Raw<uint8_t>(xz, onnx::TensorProto::UINT8, {}, {static_cast<uint8_t>(zp)});
  }
  b.Node("QuantizeLinear", {x, xs, xz}, {p + ".input_q"});
  b.Node("DequantizeLinear", {p + ".input_q", xs, xz}, {p + ".input_dq"});
  return p + ".input_dq";
}

// Per-channel s8 weights as the runtime holds them (models/src/runtime.cc MakeInt8Matmul): row r
// of W * s_in quantized to [-w_max, w_max] with the smallest bf16 scale sw >= max |W * s_in| /
// w_max (w_max 127, or 63 when the artifact's options say reduce_range); the
// dequantization scale of row r is then sw / s_in. (The artifact's int8_weights record uses an
// f32 scale per row: the same grid up to that rounding.) Adds the initializers and the
// DequantizeLinear (axis 0) whose output is `out`.
void AddInt8Weight(GraphBuilder& b, const std::string& p, const std::vector<float>& w, int rows,
                   int cols, float in_scale, int w_max, const std::string& out) {
  const float qmax = static_cast<float>(w_max);
  std::vector<int8_t> wq(static_cast<size_t>(rows) * cols);
  std::vector<float> wscale(static_cast<size_t>(rows));
  for (int rr = 0; rr < rows; ++rr) {
    float amax = 0.0f;
    for (int c = 0; c < cols; ++c) {
      amax = std::max(amax, std::fabs(w[static_cast<size_t>(rr) * cols + c] * in_scale));
    }
    const float sw = amax > 0.0f ? quant::RoundUpToBf16(amax / qmax) : 1.0f;
    for (int c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(rr) * cols + c;
      const float v = quant::RoundHalfEven(w[i] * in_scale / sw);
      wq[i] = static_cast<int8_t>(std::clamp(v, -qmax, qmax));
    }
    wscale[static_cast<size_t>(rr)] = sw / in_scale;
  }
  b.Raw<int8_t>(p + "_q", onnx::TensorProto::INT8, {rows, cols}, wq);
  b.Floats(p + "_scale", {rows}, wscale);
  b.Raw<int8_t>(p + "_zero_point", onnx::TensorProto::INT8, {rows},
                std::vector<int8_t>(static_cast<size_t>(rows), 0));
  GraphBuilder::IntAttr(
      b.Node("DequantizeLinear", {p + "_q", p + "_scale", p + "_zero_point"}, {out}), "axis", 0);
}

const char* ActivationOp(Activation a) {
  return a == Activation::kRelu      ? "Relu"
         : a == Activation::kTanh    ? "Tanh"
         : a == Activation::kSigmoid ? "Sigmoid"
                                     : nullptr;
}

// The first operation reads the normalized input x_n = (x - mean) / std. Where the runtime
// reads it as s16 it quantizes x / std and folds the mean into the bias (models/src/runtime.cc
// MakeInt8Matmul): the same here (Div, then the first bias gets -W mean / std), so both use
// one grid. Otherwise Sub / Div. Broadcasts over the last axis, so [batch, features] and
// [batch, window, features] alike. Returns whether the mean is to be folded.
bool AddNormalization(const ModelSpec& s, const Int8Description& d, GraphBuilder& b, std::string* x,
                      std::vector<float>* mean, std::vector<float>* sd) {
  *mean = s.feature_mean;
  *sd = s.feature_std;
  mean->resize(static_cast<size_t>(s.input_size), 0.0f);
  sd->resize(static_cast<size_t>(s.input_size), 1.0f);
  bool normalize = false;
  for (float m : *mean) normalize = normalize || m != 0.0f;
  for (float& v : *sd) {
    normalize = normalize || (v != 0.0f && v != 1.0f);
    v = v != 0.0f ? v : 1.0f;  // As the runtime: a zero std divides by 1.
  }
  if (!normalize) return false;
  const bool fold_mean = d.inputs[0].int8 && d.inputs[0].s16;
  b.Floats("norm.std", {s.input_size}, *sd);
  if (fold_mean) {
    b.Node("Div", {*x, "norm.std"}, {"norm.out"});
  } else {
    b.Floats("norm.mean", {s.input_size}, *mean);
    b.Node("Sub", {*x, "norm.mean"}, {"norm.centred"});
    b.Node("Div", {"norm.centred", "norm.std"}, {"norm.out"});
  }
  *x = "norm.out";
  return fold_mean;
}

// bias - W (mean / std): the constant the runtime folds into the first operation's bias.
std::vector<float> FoldMean(const std::vector<float>& w, std::vector<float> bias, int rows,
                            int cols, const std::vector<float>& mean,
                            const std::vector<float>& sd) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      const size_t k = static_cast<size_t>(c);
      bias[static_cast<size_t>(r)] -= w[static_cast<size_t>(r) * cols + c] * (mean[k] / sd[k]);
    }
  }
  return bias;
}

const char* ModeName(const QuantizedInput& q) { return q.int8 ? (q.s16 ? "s16" : "u8") : "FP32"; }

// The Linear layers (an MLP, or the head of a recurrent model on its last hidden state), their
// inputs QDQ'd as the runtime quantizes them (d.inputs[first_op + j]).
void AddLinearStack(const ModelSpec& s, const Int8Description& d, size_t first_op, bool fold_mean,
                    const std::vector<float>& mean, const std::vector<float>& sd, int w_max,
                    GraphBuilder& b, std::string* x, OnnxExportSummary* sum) {
  for (size_t j = 0; j < s.layers.size(); ++j) {
    const LinearLayer& ly = s.layers[j];
    const QuantizedInput& qi = d.inputs[first_op + j];
    const std::string p = absl::StrCat("layers.", j), w = p + ".weight";
    if (qi.int8) {
      *x = AddQdq(b, *x, p, qi.s16, qi.scale[0], qi.zero_point[0]);
      AddInt8Weight(b, w, ly.weight, ly.out, ly.in, qi.scale[0], w_max, w);
    } else {
      b.Floats(w, {ly.out, ly.in}, ly.weight);
    }
    b.Floats(p + ".bias", {ly.out},
             first_op + j == 0 && fold_mean ? FoldMean(ly.weight, ly.bias, ly.out, ly.in, mean, sd)
                                            : ly.bias);
    GraphBuilder::IntAttr(b.Node("Gemm", {*x, w, p + ".bias"}, {p + ".out"}), "transB", 1);
    *x = p + ".out";
    if (const char* act = ActivationOp(ly.activation); act != nullptr) {
      b.Node(act, {*x}, {p + ".act"});
      *x = p + ".act";
    }
    sum->layers.push_back(qi.int8 ? absl::StrCat("layers[", j, "]: ", ModeName(qi),
                                                 " input QDQ, per-channel s8 weights")
                                  : absl::StrCat("layers[", j, "]: FP32"));
  }
}

// Unrolls the recurrent layers (LSTM or GRU) over the window into plain ONNX ops, with
// QuantizeLinear / DequantizeLinear exactly where the runtime quantizes (`d`): each layer's
// input x_t, its hidden state h_{t-1} (for t >= 1: h_{-1} = 0 multiplies to exactly 0, so step 0
// adds b_hh alone), and the LSTM cell state where it is kept on an s16 grid. `*x`: the
// normalized [batch, window, input] sequence; on return, the last layer's last hidden state.
void AddRecurrent(const ModelSpec& s, const Int8Description& d, bool fold_mean,
                  const std::vector<float>& mean, const std::vector<float>& sd, int w_max,
                  GraphBuilder& b, std::string* x, OnnxExportSummary* sum) {
  const bool gru = s.arch == Arch::kGru;
  const size_t n_rnn = gru ? s.gru.size() : s.lstm.size();
  const int gates = gru ? 3 : 4;
  const int T = s.window;
  const char* key = ArchName(s.arch);
  for (int t = 0; t < T; ++t) {
    b.Raw<int64_t>(absl::StrCat("step.", t), onnx::TensorProto::INT64, {}, {t});
  }
  if (gru) b.Floats("one", {}, {1.0f});
  std::vector<std::string> inputs;  // Layer l's x_t for every t (l > 0: the previous h_t).
  for (size_t l = 0; l < n_rnn; ++l) {
    const int H = gru ? s.gru[l].hidden_size : s.lstm[l].hidden_size;
    const int I = gru ? s.gru[l].input_size : s.lstm[l].input_size;
    const std::vector<float>& w_ih = gru ? s.gru[l].w_ih : s.lstm[l].w_ih;
    const std::vector<float>& w_hh = gru ? s.gru[l].w_hh : s.lstm[l].w_hh;
    const std::vector<float>& b_ih = gru ? s.gru[l].b_ih : s.lstm[l].b_ih;
    const std::vector<float>& b_hh = gru ? s.gru[l].b_hh : s.lstm[l].b_hh;
    const std::string p = absl::StrCat(key, ".", l);
    const QuantizedInput& qx = d.inputs[2 * l];
    const QuantizedInput& qh = d.inputs[2 * l + 1];
    const int G = gates * H;
    const std::string wih = p + ".w_ih", whh = p + ".w_hh";
    if (qx.int8) {
      AddInt8Weight(b, wih, w_ih, G, I, qx.scale[0], w_max, wih);
    } else {
      b.Floats(wih, {G, I}, w_ih);
    }
    if (qh.int8) {
      AddInt8Weight(b, whh, w_hh, G, H, qh.scale[0], w_max, whh);
    } else {
      b.Floats(whh, {G, H}, w_hh);
    }
    b.Floats(p + ".b_ih", {G}, l == 0 && fold_mean ? FoldMean(w_ih, b_ih, G, I, mean, sd) : b_ih);
    b.Floats(p + ".b_hh", {G}, b_hh);
    // Split's sizes as an input (opset 13+; opset 18+ requires them or num_outputs).
    b.Raw<int64_t>(p + ".split", onnx::TensorProto::INT64, {gates},
                   std::vector<int64_t>(static_cast<size_t>(gates), H));
    if (gru) {  // Step 0's W_hh h_{-1} + b_hh is b_hh alone: its three gate slices.
      for (int k = 0; k < 3; ++k) {
        b.Floats(absl::StrCat(p, ".b_hh", k), {H},
                 std::vector<float>(b_hh.begin() + k * H, b_hh.begin() + (k + 1) * H));
      }
    }
    std::vector<std::string> xs(static_cast<size_t>(T));
    if (l == 0) {  // One QDQ on the whole sequence, then one step per Gather.
      const std::string q =
          qx.int8 ? AddQdq(b, *x, p + ".x", qx.s16, qx.scale[0], qx.zero_point[0]) : *x;
      for (int t = 0; t < T; ++t) {
        xs[static_cast<size_t>(t)] = absl::StrCat(p, ".x", t);
        GraphBuilder::IntAttr(
            b.Node("Gather", {q, absl::StrCat("step.", t)}, {xs[static_cast<size_t>(t)]}), "axis",
            1);
      }
    } else {
      for (int t = 0; t < T; ++t) {
        xs[static_cast<size_t>(t)] =
            qx.int8 ? AddQdq(b, inputs[static_cast<size_t>(t)], absl::StrCat(p, ".x", t), qx.s16,
                             qx.scale[0], qx.zero_point[0])
                    : inputs[static_cast<size_t>(t)];
      }
    }
    const float c_step = !gru && l < d.cell_step.size() ? d.cell_step[l] : 0.0f;
    if (c_step > 0.0f) {
      b.Floats(p + ".c_scale", {}, {c_step});
      b.Raw<int16_t>(p + ".c_zero_point", onnx::TensorProto::INT16, {}, {0});
    }
    std::vector<std::string> hs(static_cast<size_t>(T));
    std::string h, c;
    for (int t = 0; t < T; ++t) {
      const std::string q = absl::StrCat(p, ".t", t);
      GraphBuilder::IntAttr(
          b.Node("Gemm", {xs[static_cast<size_t>(t)], wih, p + ".b_ih"}, {q + ".gx"}), "transB", 1);
      std::string gh;
      if (t > 0) {
        const std::string hq =
            qh.int8 ? AddQdq(b, h, q + ".h", qh.s16, qh.scale[0], qh.zero_point[0]) : h;
        GraphBuilder::IntAttr(b.Node("Gemm", {hq, whh, p + ".b_hh"}, {q + ".gh"}), "transB", 1);
        gh = q + ".gh";
      }
      if (!gru) {
        b.Node("Add", {q + ".gx", t > 0 ? gh : p + ".b_hh"}, {q + ".gates"});
        GraphBuilder::IntAttr(b.Node("Split", {q + ".gates", p + ".split"},
                                     {q + ".gi", q + ".gf", q + ".gg", q + ".go"}),
                              "axis", 1);
        b.Node("Sigmoid", {q + ".gi"}, {q + ".i"});
        b.Node("Sigmoid", {q + ".gf"}, {q + ".f"});
        b.Node("Tanh", {q + ".gg"}, {q + ".g"});
        b.Node("Sigmoid", {q + ".go"}, {q + ".o"});
        b.Node("Mul", {q + ".i", q + ".g"}, {q + ".ig"});
        std::string cn = q + ".ig";
        if (t > 0) {
          b.Node("Mul", {q + ".f", c}, {q + ".fc"});
          b.Node("Add", {q + ".fc", q + ".ig"}, {q + ".c"});
          cn = q + ".c";
        }
        if (c_step > 0.0f) {  // The runtime keeps c on its s16 grid.
          b.Node("QuantizeLinear", {cn, p + ".c_scale", p + ".c_zero_point"}, {q + ".c_q"});
          b.Node("DequantizeLinear", {q + ".c_q", p + ".c_scale", p + ".c_zero_point"},
                 {q + ".c_dq"});
          cn = q + ".c_dq";
        }
        c = cn;
        b.Node("Tanh", {c}, {q + ".tc"});
        b.Node("Mul", {q + ".o", q + ".tc"}, {q + ".h"});
      } else {
        GraphBuilder::IntAttr(
            b.Node("Split", {q + ".gx", p + ".split"}, {q + ".xr", q + ".xz", q + ".xn"}), "axis",
            1);
        std::string hr = p + ".b_hh0", hz = p + ".b_hh1", hn = p + ".b_hh2";
        if (t > 0) {
          GraphBuilder::IntAttr(
              b.Node("Split", {gh, p + ".split"}, {q + ".hr", q + ".hz", q + ".hn"}), "axis", 1);
          hr = q + ".hr";
          hz = q + ".hz";
          hn = q + ".hn";
        }
        b.Node("Add", {q + ".xr", hr}, {q + ".ar"});
        b.Node("Sigmoid", {q + ".ar"}, {q + ".r"});
        b.Node("Add", {q + ".xz", hz}, {q + ".az"});
        b.Node("Sigmoid", {q + ".az"}, {q + ".z"});
        b.Node("Mul", {q + ".r", hn}, {q + ".rh"});
        b.Node("Add", {q + ".xn", q + ".rh"}, {q + ".an"});
        b.Node("Tanh", {q + ".an"}, {q + ".n"});
        b.Node("Sub", {"one", q + ".z"}, {q + ".1mz"});
        if (t > 0) {
          b.Node("Mul", {q + ".1mz", q + ".n"}, {q + ".a"});
          b.Node("Mul", {q + ".z", h}, {q + ".b"});
          b.Node("Add", {q + ".a", q + ".b"}, {q + ".h"});
        } else {
          b.Node("Mul", {q + ".1mz", q + ".n"}, {q + ".h"});
        }
      }
      h = q + ".h";
      hs[static_cast<size_t>(t)] = h;
    }
    inputs = std::move(hs);
    sum->layers.push_back(absl::StrCat(key, "[", l, "]: x ", ModeName(qx), ", h ", ModeName(qh),
                                       qx.int8 || qh.int8 ? " QDQ, per-channel s8 weights" : "",
                                       c_step > 0.0f ? ", cell state s16" : "", ", unrolled over ",
                                       T, " steps"));
  }
  *x = inputs.back();
}

// The model proto's header: IR version and opset for `opset`, producer, provenance.
onnx::GraphProto* StartModel(onnx::ModelProto& model, int opset, const Artifact& a,
                             const std::string& artifact_path) {
  model.set_ir_version(opset >= 21 ? 10 : 7);
  model.set_producer_name("qsig");
  model.set_producer_version(a.qsig_build);
  model.set_doc_string(absl::StrCat("qsig export --onnx-qdq of ", artifact_path, " (sha256 ",
                                    a.content_sha256, ")"));
  onnx::OperatorSetIdProto* os = model.add_opset_import();
  os->set_domain("");
  os->set_version(opset);
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(a.spec.name.empty() ? "qsig" : a.spec.name);
  return g;
}

// Serializes `model` to `output_path`; the size goes into `sum`.
absl::Status FinishModel(const onnx::ModelProto& model, const std::string& output_path,
                         OnnxExportSummary* sum) {
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat(output_path, ": ONNX serialization failed"));
  }
  {
    std::ofstream out(output_path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return absl::DataLossError(absl::StrCat(output_path, ": write failed"));
  }
  sum->bytes = bytes.size();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<OnnxExportSummary> ExportOnnxQdq(const std::string& artifact_path,
                                                const std::string& output_path) {
  if (output_path.empty()) return absl::InvalidArgumentError("-o OUT.onnx is required");
  QSIG_ASSIGN_OR_RETURN(Artifact a, ReadArtifact(artifact_path));
  const ModelSpec& s = a.spec;
  const Int8Options& opt = a.calibration.options;
  if (opt.per_feature_input) {
    return absl::UnimplementedError(absl::StrCat(
        artifact_path,
        ": the artifact quantizes the model's input per feature (quantize --per-channel); "
        "qsig export --onnx-qdq supports per-tensor activations only: re-quantize without "
        "--per-channel"));
  }
  // The runtime the server would serve (verified against the artifact's reference outputs),
  // and how it quantizes (accuracy guard included).
  Int8Description d;
  QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> int8, BuildInt8Model(a, &d));

  OnnxExportSummary sum;
  sum.model_name = s.name;
  sum.int8_precision = int8->precision();
  const bool s16 =
      std::any_of(d.inputs.begin(), d.inputs.end(),
                  [](const QuantizedInput& q) { return q.int8 && q.s16; }) ||
      std::any_of(d.cell_step.begin(), d.cell_step.end(), [](float c) { return c > 0.0f; });
  sum.opset = s16 ? 21 : 13;  // QuantizeLinear / DequantizeLinear with int16 from opset 21.
  onnx::ModelProto model;
  onnx::GraphProto* g = StartModel(model, sum.opset, a, artifact_path);
  onnx::ValueInfoProto* in = g->add_input();
  in->set_name("features");
  onnx::TypeProto_Tensor* tt = in->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("batch");
  if (s.arch != Arch::kMlp) tt->mutable_shape()->add_dim()->set_dim_value(s.window);
  tt->mutable_shape()->add_dim()->set_dim_value(s.input_size);

  GraphBuilder b(g);
  std::string x = "features";
  std::vector<float> mean, sd;
  const bool fold_mean = AddNormalization(s, d, b, &x, &mean, &sd);
  // The weights' range as the runtime quantized them (Int8Options::reduce_range: 7-bit).
  const int w_max = opt.reduce_range ? quant::kS8ReduceRangeMax : quant::kS8Max;
  size_t first_linear = 0;
  if (s.arch != Arch::kMlp) {
    AddRecurrent(s, d, fold_mean, mean, sd, w_max, b, &x, &sum);
    first_linear = 2 * (s.arch == Arch::kGru ? s.gru.size() : s.lstm.size());
  }
  AddLinearStack(s, d, first_linear, fold_mean, mean, sd, w_max, b, &x, &sum);
  b.Node("Identity", {x}, {"signal"});
  SetValueInfo(g->add_output(), "signal", s.layers.back().out);
  sum.nodes = static_cast<size_t>(g->node_size());
  QSIG_RETURN_IF_ERROR(FinishModel(model, output_path, &sum));
  return sum;
}

}  // namespace qsig::models::io
