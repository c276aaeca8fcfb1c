// RunExportOnnxQdq (commands.h): a .qsig artifact as a QDQ ONNX model.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "internal/status.h"
#include "onnx/onnx_pb.h"  // Defines ONNX_API, then includes onnx-ml.pb.h (ONNX_ML).
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/commands.h"
#include "qsig/quant/quantize.h"

namespace qsig::models::io {
namespace {

constexpr int kMaxS16Cols = 512;  // models/src/internal/kernels.h: s16 inputs up to 512 columns.
constexpr size_t kPlanCheckWindows = 64;

// One layer's precision as the qsig runtime runs it.
enum class LayerMode { kFp32, kU8, kS16 };

// The runtime's plan for `prec` (QuantizableLayers order, MLP: one entry per Linear layer) with
// the default rules of models/src/int8_model.cc MakePlan: the model's input is s16 if
// options.s16_input, an INT8 last layer with <= 16 outputs reads s16, up to 512 columns.
std::vector<LayerMode> Modes(const ModelSpec& s, const Int8Options& o,
                             const std::vector<Precision>& prec, bool explicit_plan) {
  std::vector<LayerMode> m(prec.size(), LayerMode::kFp32);
  for (size_t l = 0; l < prec.size(); ++l) {
    if (prec[l] == Precision::kFp32) continue;
    bool s16 = prec[l] == Precision::kInt8S16;
    if (o.s16_input && l == 0) s16 = true;
    if (!explicit_plan && l + 1 == prec.size() && s.layers.back().out <= 16) s16 = true;
    m[l] = s16 && s.layers[l].in <= kMaxS16Cols ? LayerMode::kS16 : LayerMode::kU8;
  }
  return m;
}

// The per-layer precisions of the artifact's INT8 runtime. The default plan is derived from the
// options; when the accuracy guard demoted layers (precision() "mixed"), the demotions are not
// recorded, so they are found again: the guard demotes layers in AnalyzeSensitivity's order, so
// each prefix of that order is rebuilt as an explicit plan and compared with the artifact's
// runtime on the stored windows (bit-exact in one process).
absl::StatusOr<std::vector<Precision>> RecoverPlan(const Artifact& a, const Model& int8) {
  const ModelSpec& s = a.spec;
  const Int8Options& o = a.calibration.options;
  const std::vector<std::string> names = QuantizableLayers(s);
  if (!o.layers.empty()) return o.layers;
  std::vector<Precision> prec(names.size(), Precision::kInt8);
  if (o.fp32_head && s.layers.back().out <= 16 && names.size() > 1) {
    prec.back() = Precision::kFp32;
  }
  if (std::string(int8.precision()) != "mixed") return prec;
  auto spec = std::make_shared<const ModelSpec>(s);
  const size_t per = static_cast<size_t>(s.window) * s.input_size;
  const std::vector<float>& w = a.calibration.windows;
  const size_t n_all = w.size() / per;
  const size_t stride = std::max<size_t>(1, n_all / 2000);  // As the guard samples them.
  std::vector<float> eval;
  for (size_t i = 0; i < n_all; i += stride) {
    eval.insert(eval.end(), w.begin() + static_cast<std::ptrdiff_t>(i * per),
                w.begin() + static_cast<std::ptrdiff_t>((i + 1) * per));
  }
  QSIG_ASSIGN_OR_RETURN(std::vector<LayerSensitivity> ranked, AnalyzeSensitivity(spec, w, eval, o));
  const size_t check = std::min(n_all, kPlanCheckWindows);
  std::vector<float> ref(check), ws(int8.workspace_floats());
  for (size_t i = 0; i < check; ++i) ref[i] = int8.Run({w.data() + i * per, per}, ws.data());
  for (const LayerSensitivity& ls : ranked) {
    const size_t g =
        static_cast<size_t>(std::find(names.begin(), names.end(), ls.layer) - names.begin());
    if (g >= prec.size() || prec[g] == Precision::kFp32) continue;
    prec[g] = Precision::kFp32;
    // The explicit plan equal to the default plan with these demotions.
    Int8Options e = o;
    e.layers = prec;
    e.max_rmse = 0;
    if (prec.back() == Precision::kInt8 && s.layers.back().out <= 16) {
      e.layers.back() = Precision::kInt8S16;
    }
    QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, CalibrateInt8Model(spec, w, e));
    std::vector<float> ws2(m->workspace_floats());
    bool same = true;
    for (size_t i = 0; i < check && same; ++i) {
      same = m->Run({w.data() + i * per, per}, ws2.data()) == ref[i];
    }
    if (same) return prec;
  }
  return absl::FailedPreconditionError(
      "the artifact's mixed-precision plan (layers the accuracy guard kept FP32) could not be "
      "recovered; re-quantize with an explicit plan (Int8Options::layers)");
}

// Smallest bf16 >= v for v > 0 (models/src/internal/kernels.h RoundUpToBf16): the runtime's
// per-row weight scale.
float RoundUpToBf16(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if (u & 0xFFFFu) u = (u & 0xFFFF0000u) + 0x10000u;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Per Linear layer, the observed extremes of its input over the calibration windows (layer 0:
// the normalized features), from a plain FP32 pass: the runtime's s16 ranges are the extremes.
std::vector<std::pair<float, float>> InputExtremes(const ModelSpec& s,
                                                   const std::vector<float>& windows) {
  std::vector<std::pair<float, float>> ext(s.layers.size(), {INFINITY, -INFINITY});
  const size_t f = static_cast<size_t>(s.input_size);
  std::vector<float> x, y;
  for (size_t i = 0; (i + 1) * f <= windows.size(); ++i) {
    x.assign(windows.begin() + static_cast<std::ptrdiff_t>(i * f),
             windows.begin() + static_cast<std::ptrdiff_t>((i + 1) * f));
    for (size_t k = 0; k < f; ++k) {
      const float m = k < s.feature_mean.size() ? s.feature_mean[k] : 0.0f;
      const float sd =
          k < s.feature_std.size() && s.feature_std[k] != 0.0f ? s.feature_std[k] : 1.0f;
      x[k] = (x[k] - m) / sd;
    }
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const LinearLayer& ly = s.layers[l];
      for (float v : x) {
        ext[l].first = std::min(ext[l].first, v);
        ext[l].second = std::max(ext[l].second, v);
      }
      y.assign(static_cast<size_t>(ly.out), 0.0f);
      for (int r = 0; r < ly.out; ++r) {
        float acc = ly.bias.empty() ? 0.0f : ly.bias[static_cast<size_t>(r)];
        for (int c = 0; c < ly.in; ++c) {
          acc += ly.weight[static_cast<size_t>(r) * ly.in + c] * x[static_cast<size_t>(c)];
        }
        switch (ly.activation) {
          case Activation::kRelu:
            acc = std::max(acc, 0.0f);
            break;
          case Activation::kTanh:
            acc = std::tanh(acc);
            break;
          case Activation::kSigmoid:
            acc = 1.0f / (1.0f + std::exp(-acc));
            break;
          case Activation::kNone:
            break;
        }
        y[static_cast<size_t>(r)] = acc;
      }
      x.swap(y);
    }
  }
  return ext;
}

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

}  // namespace

absl::StatusOr<ExportSummary> RunExportOnnxQdq(const ExportOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.output_path.empty()) return absl::InvalidArgumentError("-o OUT.onnx is required");
  QSIG_ASSIGN_OR_RETURN(Artifact a, ReadArtifact(o.artifact_path));
  const ModelSpec& s = a.spec;
  const Int8Options& opt = a.calibration.options;
  if (s.arch != Arch::kMlp) {
    return absl::UnimplementedError(absl::StrCat(
        o.artifact_path, ": model '", s.name, "' is ", s.arch == Arch::kLstm ? "an LSTM" : "a GRU",
        "; qsig export --onnx-qdq supports MLP artifacts only (Linear layers with Relu / Tanh / "
        "Sigmoid / no activation, window 1, optional normalization); use qsig predict "
        "--precision int8 to compare a recurrent model with another runtime"));
  }
  if (opt.per_feature_input) {
    return absl::UnimplementedError(absl::StrCat(
        o.artifact_path,
        ": the artifact quantizes the model's input per feature (quantize --per-channel); "
        "qsig export --onnx-qdq supports per-tensor activations only: re-quantize without "
        "--per-channel"));
  }
  QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> int8, BuildInt8Model(a));
  QSIG_ASSIGN_OR_RETURN(std::vector<Precision> prec, RecoverPlan(a, *int8));
  const std::vector<LayerMode> modes = Modes(s, opt, prec, !opt.layers.empty());

  ExportSummary sum;
  sum.model_name = s.name;
  sum.int8_precision = int8->precision();
  sum.opset =
      std::any_of(modes.begin(), modes.end(), [](LayerMode m) { return m == LayerMode::kS16; })
          ? 21  // QuantizeLinear / DequantizeLinear with int16 from opset 21.
          : 13;
  onnx::ModelProto model;
  model.set_ir_version(sum.opset >= 21 ? 10 : 7);
  model.set_producer_name("qsig");
  model.set_producer_version(a.qsig_build);
  model.set_doc_string(absl::StrCat("qsig export --onnx-qdq of ", o.artifact_path, " (sha256 ",
                                    a.content_sha256, ")"));
  onnx::OperatorSetIdProto* os = model.add_opset_import();
  os->set_domain("");
  os->set_version(sum.opset);
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(s.name.empty() ? "qsig" : s.name);
  SetValueInfo(g->add_input(), "features", s.input_size);
  GraphBuilder b(g);

  std::string x = "features";
  bool normalize = false;
  for (size_t k = 0; k < s.feature_mean.size(); ++k) {
    normalize = normalize || s.feature_mean[k] != 0.0f;
  }
  for (size_t k = 0; k < s.feature_std.size(); ++k) {
    normalize = normalize || (s.feature_std[k] != 0.0f && s.feature_std[k] != 1.0f);
  }
  // Normalization. Where the first layer reads s16, the runtime quantizes x / std and folds
  // the mean into the bias (models/src/runtime.cc MakeInt8Matmul): the same here (Div, then the
  // bias gets -W mean / std), so both use one grid. Otherwise (x - mean) / std as Sub / Div.
  const bool fold_mean = normalize && modes[0] == LayerMode::kS16;
  std::vector<float> mean(s.feature_mean), sd(s.feature_std);
  mean.resize(static_cast<size_t>(s.input_size), 0.0f);
  sd.resize(static_cast<size_t>(s.input_size), 1.0f);
  for (float& v : sd) v = v != 0.0f ? v : 1.0f;  // As the runtime: a zero std divides by 1.
  if (normalize) {
    b.Floats("norm.std", {s.input_size}, sd);
    if (fold_mean) {
      b.Node("Div", {x, "norm.std"}, {"norm.out"});
    } else {
      b.Floats("norm.mean", {s.input_size}, mean);
      b.Node("Sub", {x, "norm.mean"}, {"norm.centred"});
      b.Node("Div", {"norm.centred", "norm.std"}, {"norm.out"});
    }
    x = "norm.out";
  }
  auto range_of = [&a](const std::string& name) -> const ActivationRange* {
    for (const ActivationRange& r : a.activation_ranges) {
      if (r.tensor == name) return &r;
    }
    return nullptr;
  };
  const std::vector<std::pair<float, float>> ext = InputExtremes(s, a.calibration.windows);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LinearLayer& ly = s.layers[l];
    const std::string p = absl::StrCat("layers.", l);
    const std::string name = absl::StrCat("layers[", l, "]");
    std::string w = p + ".weight";
    if (modes[l] == LayerMode::kFp32) {
      b.Floats(w, {ly.out, ly.in}, ly.weight);
      sum.layers.push_back(absl::StrCat(name, ": FP32"));
    } else {
      const ActivationRange* r = range_of(name + ".input");
      if (r == nullptr) {
        return absl::DataLossError(absl::StrCat(
            o.artifact_path, ": ", name, " has no recorded activation range; re-quantize it"));
      }
      // The input's QDQ pair: u8 with the artifact's scale and zero point, or symmetric s16
      // over the observed extremes with 2x headroom (layer 0 widened by max |mean / std|), as
      // the runtime (models/src/int8_model.cc MakePlan).
      const std::string xs = p + ".input_scale", xz = p + ".input_zero_point";
      float in_scale = r->params.scale;
      if (modes[l] == LayerMode::kS16) {
        float amax = std::max(std::fabs(ext[l].first), std::fabs(ext[l].second));
        if (!(amax > 0.0f) || !std::isfinite(amax)) amax = 1.0f;
        if (l == 0) {
          float off = 0.0f;
          for (size_t k = 0; k < s.feature_mean.size(); ++k) {
            const float sd =
                k < s.feature_std.size() && s.feature_std[k] != 0.0f ? s.feature_std[k] : 1.0f;
            off = std::max(off, std::fabs(s.feature_mean[k] / sd));
          }
          amax += off;
        }
        in_scale = 2.0f * amax / 32767.0f;
        b.Floats(xs, {}, {in_scale});
        b.Raw<int16_t>(xz, onnx::TensorProto::INT16, {}, {0});
      } else {
        b.Floats(xs, {}, {in_scale});
        b.Raw<uint8_t>(xz, onnx::TensorProto::UINT8, {},
                       {static_cast<uint8_t>(r->params.zero_point)});
      }
      b.Node("QuantizeLinear", {x, xs, xz}, {p + ".input_q"});
      b.Node("DequantizeLinear", {p + ".input_q", xs, xz}, {p + ".input_dq"});
      x = p + ".input_dq";
      // Per-channel s8 weights as the runtime holds them (models/src/runtime.cc MakeInt8Matmul):
      // row r of W * s_in quantized with the smallest bf16 scale sw >= max |W * s_in| / 127;
      // the dequantization scale of row r is then sw / s_in. (The artifact's int8_weights
      // record uses an f32 scale per row: the same grid up to that rounding.)
      std::vector<int8_t> wq(static_cast<size_t>(ly.out) * ly.in);
      std::vector<float> wscale(static_cast<size_t>(ly.out));
      for (int rr = 0; rr < ly.out; ++rr) {
        float amax = 0.0f;
        for (int c = 0; c < ly.in; ++c) {
          amax =
              std::max(amax, std::fabs(ly.weight[static_cast<size_t>(rr) * ly.in + c] * in_scale));
        }
        const float sw = amax > 0.0f ? RoundUpToBf16(amax / 127.0f) : 1.0f;
        for (int c = 0; c < ly.in; ++c) {
          const size_t i = static_cast<size_t>(rr) * ly.in + c;
          const float v = quant::RoundHalfEven(ly.weight[i] * in_scale / sw);
          wq[i] = static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
        }
        wscale[static_cast<size_t>(rr)] = sw / in_scale;
      }
      b.Raw<int8_t>(p + ".weight_q", onnx::TensorProto::INT8, {ly.out, ly.in}, wq);
      b.Floats(p + ".weight_scale", {ly.out}, wscale);
      b.Raw<int8_t>(p + ".weight_zero_point", onnx::TensorProto::INT8, {ly.out},
                    std::vector<int8_t>(static_cast<size_t>(ly.out), 0));
      GraphBuilder::IntAttr(
          b.Node("DequantizeLinear",
                 {p + ".weight_q", p + ".weight_scale", p + ".weight_zero_point"}, {w}),
          "axis", 0);
      sum.layers.push_back(absl::StrCat(name, ": ", modes[l] == LayerMode::kS16 ? "s16" : "u8",
                                        " input QDQ, per-channel s8 weights"));
    }
    std::vector<float> bias = ly.bias;
    if (l == 0 && fold_mean) {
      for (int rr = 0; rr < ly.out; ++rr) {
        for (int c = 0; c < ly.in; ++c) {
          const size_t k = static_cast<size_t>(c);
          bias[static_cast<size_t>(rr)] -=
              ly.weight[static_cast<size_t>(rr) * ly.in + c] * (mean[k] / sd[k]);
        }
      }
    }
    b.Floats(p + ".bias", {ly.out}, bias);
    const std::string y = p + ".out";
    GraphBuilder::IntAttr(b.Node("Gemm", {x, w, p + ".bias"}, {y}), "transB", 1);
    x = y;
    const char* act = ly.activation == Activation::kRelu      ? "Relu"
                      : ly.activation == Activation::kTanh    ? "Tanh"
                      : ly.activation == Activation::kSigmoid ? "Sigmoid"
                                                              : nullptr;
    if (act != nullptr) {
      b.Node(act, {x}, {p + ".act"});
      x = p + ".act";
    }
  }
  b.Node("Identity", {x}, {"signal"});
  SetValueInfo(g->add_output(), "signal", s.layers.back().out);
  sum.nodes = static_cast<size_t>(g->node_size());

  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat(o.output_path, ": ONNX serialization failed"));
  }
  {
    std::ofstream out(o.output_path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return absl::DataLossError(absl::StrCat(o.output_path, ": write failed"));
  }
  log << "export: " << s.name << " (" << sum.int8_precision << ") -> " << o.output_path
      << ": QDQ ONNX, opset " << sum.opset << ", " << sum.nodes << " nodes, " << bytes.size()
      << " bytes\n";
  for (const std::string& l : sum.layers) log << "  " << l << "\n";
  return sum;
}

}  // namespace qsig::models::io
