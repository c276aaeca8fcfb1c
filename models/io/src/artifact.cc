// The .qsig artifact (artifact.h): building, writing, reading, verifying, rebuilding INT8.
#include "qsig/models/io/artifact.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "artifact.pb.h"
#include "internal/import_common.h"
#include "qsig/models/sha256.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/calibration.h"

#ifndef QSIG_BUILD_DESCRIBE
#define QSIG_BUILD_DESCRIBE "unknown"
#endif

namespace qsig::models::io {
namespace {

namespace pb = ::qsig::artifact::v1;

constexpr char kMagic[8] = {'Q', 'S', 'I', 'G', 'A', 'R', 'T', '\0'};
constexpr size_t kHeaderSize = 56;
constexpr size_t kReferenceWindows = 64;

// ---- little-endian helpers ----
void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetLe(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(s[at + static_cast<size_t>(i)])) << (8 * i);
  }
  return v;
}

// ---- ModelSpec <-> proto ----
pb::Activation ToProto(Activation a) {
  switch (a) {
    case Activation::kRelu:
      return pb::ACTIVATION_RELU;
    case Activation::kTanh:
      return pb::ACTIVATION_TANH;
    case Activation::kSigmoid:
      return pb::ACTIVATION_SIGMOID;
    case Activation::kNone:
      break;
  }
  return pb::ACTIVATION_NONE;
}

template <typename Layer>
void RecurrentToProto(const Layer& l, pb::Recurrent* r) {
  r->set_input_size(l.input_size);
  r->set_hidden_size(l.hidden_size);
  r->mutable_w_ih()->Add(l.w_ih.begin(), l.w_ih.end());
  r->mutable_w_hh()->Add(l.w_hh.begin(), l.w_hh.end());
  r->mutable_b_ih()->Add(l.b_ih.begin(), l.b_ih.end());
  r->mutable_b_hh()->Add(l.b_hh.begin(), l.b_hh.end());
}
template <typename Layer>
Layer RecurrentFromProto(const pb::Recurrent& r) {
  Layer l;
  l.input_size = r.input_size();
  l.hidden_size = r.hidden_size();
  l.w_ih.assign(r.w_ih().begin(), r.w_ih().end());
  l.w_hh.assign(r.w_hh().begin(), r.w_hh().end());
  l.b_ih.assign(r.b_ih().begin(), r.b_ih().end());
  l.b_hh.assign(r.b_hh().begin(), r.b_hh().end());
  return l;
}

void SpecToProto(const ModelSpec& s, pb::Model* m) {
  m->set_name(s.name);
  m->set_arch(s.arch == Arch::kLstm  ? pb::ARCH_LSTM
              : s.arch == Arch::kGru ? pb::ARCH_GRU
                                     : pb::ARCH_MLP);
  m->set_input_size(s.input_size);
  m->set_window(s.window);
  for (const auto& n : s.feature_names) m->add_feature_names(n);
  m->mutable_feature_mean()->Add(s.feature_mean.begin(), s.feature_mean.end());
  m->mutable_feature_std()->Add(s.feature_std.begin(), s.feature_std.end());
  for (const auto& l : s.lstm) RecurrentToProto(l, m->add_lstm());
  for (const auto& l : s.gru) RecurrentToProto(l, m->add_gru());
  for (const auto& l : s.layers) {
    pb::Linear* p = m->add_layers();
    p->set_in(l.in);
    p->set_out(l.out);
    p->set_activation(ToProto(l.activation));
    p->mutable_weight()->Add(l.weight.begin(), l.weight.end());
    p->mutable_bias()->Add(l.bias.begin(), l.bias.end());
  }
  const std::vector<std::string> names = QuantizableLayers(s);
  for (size_t k = 0; k < s.input_ranges.size() && k < names.size(); ++k) {
    const SourceRange& r = s.input_ranges[k];
    if (!r.set) continue;
    pb::SourceRange* p = m->add_input_ranges();
    p->set_layer(names[k]);
    p->set_min(r.min);
    p->set_max(r.max);
  }
}

absl::StatusOr<ModelSpec> SpecFromProto(const pb::Model& m) {
  ModelSpec s;
  s.name = m.name();
  switch (m.arch()) {
    case pb::ARCH_MLP:
      s.arch = Arch::kMlp;
      break;
    case pb::ARCH_LSTM:
      s.arch = Arch::kLstm;
      break;
    case pb::ARCH_GRU:
      s.arch = Arch::kGru;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("model.arch ", m.arch(), " is unknown"));
  }
  s.input_size = m.input_size();
  s.window = m.window();
  s.feature_names.assign(m.feature_names().begin(), m.feature_names().end());
  s.feature_mean.assign(m.feature_mean().begin(), m.feature_mean().end());
  s.feature_std.assign(m.feature_std().begin(), m.feature_std().end());
  for (const auto& r : m.lstm()) s.lstm.push_back(RecurrentFromProto<LstmLayer>(r));
  for (const auto& r : m.gru()) s.gru.push_back(RecurrentFromProto<GruLayer>(r));
  for (const auto& p : m.layers()) {
    LinearLayer l;
    l.in = p.in();
    l.out = p.out();
    switch (p.activation()) {
      case pb::ACTIVATION_NONE:
        l.activation = Activation::kNone;
        break;
      case pb::ACTIVATION_RELU:
        l.activation = Activation::kRelu;
        break;
      case pb::ACTIVATION_TANH:
        l.activation = Activation::kTanh;
        break;
      case pb::ACTIVATION_SIGMOID:
        l.activation = Activation::kSigmoid;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("model.layers[", s.layers.size(), "].activation is unknown"));
    }
    l.weight.assign(p.weight().begin(), p.weight().end());
    l.bias.assign(p.bias().begin(), p.bias().end());
    s.layers.push_back(std::move(l));
  }
  if (m.input_ranges_size() > 0) {
    const std::vector<std::string> names = QuantizableLayers(s);
    s.input_ranges.assign(names.size(), SourceRange{});
    for (const pb::SourceRange& p : m.input_ranges()) {
      const size_t k =
          static_cast<size_t>(std::find(names.begin(), names.end(), p.layer()) - names.begin());
      if (k >= names.size() || s.input_ranges[k].set) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.input_ranges: layer '", p.layer(),
                         k >= names.size() ? "' is not a quantizable layer of this model"
                                           : "' has more than one range"));
      }
      s.input_ranges[k] = SourceRange{true, p.min(), p.max()};
    }
  }
  return s;
}

void OptionsToProto(const Int8Options& o, pb::Int8Options* p) {
  p->set_method(quant::CalibrationMethodName(o.method));
  p->set_percentile(o.percentile);
  p->set_s16_input(o.s16_input);
  p->set_fp32_head(o.fp32_head);
  p->set_per_feature_input(o.per_feature_input);
  for (Precision x : o.layers) p->add_layer_precision(PrecisionName(x));
  p->set_cell_state(o.cell_state == CellState::kS16 ? "s16" : "fp32");
  p->set_max_rmse(o.max_rmse);
  p->set_use_source_ranges(o.use_source_ranges);
  p->set_reduce_range(o.reduce_range);
}

absl::StatusOr<Int8Options> OptionsFromProto(const pb::Int8Options& p) {
  Int8Options o;
  QSIG_ASSIGN_OR_RETURN(o.method, quant::ParseCalibrationMethod(p.method()));
  o.percentile = p.percentile();
  o.s16_input = p.s16_input();
  o.fp32_head = p.fp32_head();
  o.per_feature_input = p.per_feature_input();
  o.max_rmse = p.has_max_rmse() ? p.max_rmse() : 0.0;
  o.use_source_ranges = p.has_use_source_ranges() ? p.use_source_ranges() : true;
  o.reduce_range = p.has_reduce_range() && p.reduce_range();
  for (const std::string& s : p.layer_precision()) {
    if (s == "int8") {
      o.layers.push_back(Precision::kInt8);
    } else if (s == "int8_s16") {
      o.layers.push_back(Precision::kInt8S16);
    } else if (s == "fp32") {
      o.layers.push_back(Precision::kFp32);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("calibration.options.layer_precision '", s,
                                                     "' is unknown (int8, int8_s16, fp32)"));
    }
  }
  if (p.cell_state() == "s16") {
    o.cell_state = CellState::kS16;
  } else if (p.cell_state() == "fp32" || p.cell_state().empty()) {
    o.cell_state = CellState::kFp32;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration.options.cell_state '", p.cell_state(), "' is unknown"));
  }
  return o;
}

// ---- quantities recorded beside the model ----
absl::Status QuantizeWeights(const ModelSpec& s, bool reduce_range, std::vector<Int8Weight>& out) {
  auto add = [&out, reduce_range](std::string name, const std::vector<float>& w, int rows,
                                  int cols) -> absl::Status {
    QSIG_ASSIGN_OR_RETURN(quant::PerChannelS8 q,
                          quant::QuantizePerChannelSymmetricS8(w, rows, cols, reduce_range));
    out.push_back(Int8Weight{std::move(name), std::move(q)});
    return absl::OkStatus();
  };
  for (size_t l = 0; l < s.lstm.size(); ++l) {
    const auto& ly = s.lstm[l];
    QSIG_RETURN_IF_ERROR(
        add(absl::StrCat("lstm[", l, "].w_ih"), ly.w_ih, 4 * ly.hidden_size, ly.input_size));
    QSIG_RETURN_IF_ERROR(
        add(absl::StrCat("lstm[", l, "].w_hh"), ly.w_hh, 4 * ly.hidden_size, ly.hidden_size));
  }
  for (size_t l = 0; l < s.gru.size(); ++l) {
    const auto& ly = s.gru[l];
    QSIG_RETURN_IF_ERROR(
        add(absl::StrCat("gru[", l, "].w_ih"), ly.w_ih, 3 * ly.hidden_size, ly.input_size));
    QSIG_RETURN_IF_ERROR(
        add(absl::StrCat("gru[", l, "].w_hh"), ly.w_hh, 3 * ly.hidden_size, ly.hidden_size));
  }
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const auto& ly = s.layers[l];
    QSIG_RETURN_IF_ERROR(add(absl::StrCat("layers[", l, "].weight"), ly.weight, ly.out, ly.in));
  }
  return absl::OkStatus();
}

float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// y = W x + b for one row-major out x in matrix.
void Affine(const std::vector<float>& w, const std::vector<float>& b, const float* x, int in,
            int out, float* y) {
  for (int o = 0; o < out; ++o) {
    float acc = b.empty() ? 0.0f : b[static_cast<size_t>(o)];
    const float* row = w.data() + static_cast<size_t>(o) * in;
    for (int i = 0; i < in; ++i) acc += row[i] * x[i];
    y[o] = acc;
  }
}

// Observes the tensors the INT8 runtime quantizes (models/README.md): per recurrent layer its
// input x_t and previous hidden state h_{t-1}; per Linear layer its input. A plain FP32 pass,
// independent of the runtime's kernels.
absl::Status ObserveRanges(const ModelSpec& s, std::span<const float> windows, const Int8Options& o,
                           std::vector<ActivationRange>& out) {
  quant::CalibrationOptions co;
  co.method = o.method;
  co.percentile = o.percentile;
  std::map<std::string, quant::TensorCalibrator> cal;
  std::vector<std::string> order;
  auto observe = [&](const std::string& name, const float* x, int n) {
    auto it = cal.find(name);
    if (it == cal.end()) {
      it = cal.emplace(name, quant::TensorCalibrator(co)).first;
      order.push_back(name);
    }
    it->second.Observe(std::span<const float>(x, static_cast<size_t>(n)));
  };
  const int w = s.window, f = s.input_size;
  const size_t per = static_cast<size_t>(w) * f;
  const size_t n = windows.size() / per;
  std::vector<float> seq, next, h, c, gates, gh, tmp;
  for (size_t k = 0; k < n; ++k) {
    // Normalized input sequence, w x f.
    seq.assign(windows.begin() + static_cast<std::ptrdiff_t>(k * per),
               windows.begin() + static_cast<std::ptrdiff_t>((k + 1) * per));
    for (size_t i = 0; i < seq.size(); ++i) {
      const size_t j = i % static_cast<size_t>(f);
      // A model without normalization (empty feature_mean / feature_std) reads raw features.
      const float sd =
          j >= s.feature_std.size() || s.feature_std[j] == 0.0f ? 1.0f : s.feature_std[j];
      const float mean = j < s.feature_mean.size() ? s.feature_mean[j] : 0.0f;
      seq[i] = (seq[i] - mean) / sd;
    }
    int width = f;
    auto run_rnn = [&](const auto& layers, const char* key, bool lstm) {
      for (size_t l = 0; l < layers.size(); ++l) {
        const auto& ly = layers[l];
        const int H = ly.hidden_size;
        const std::string xn = absl::StrCat(key, "[", l, "].x");
        const std::string hn = absl::StrCat(key, "[", l, "].h");
        h.assign(static_cast<size_t>(H), 0.0f);
        c.assign(static_cast<size_t>(H), 0.0f);
        next.assign(static_cast<size_t>(w) * H, 0.0f);
        const int g = lstm ? 4 : 3;
        gates.resize(static_cast<size_t>(g) * H);
        gh.resize(static_cast<size_t>(g) * H);
        for (int t = 0; t < w; ++t) {
          const float* x = seq.data() + static_cast<size_t>(t) * width;
          observe(xn, x, width);
          observe(hn, h.data(), H);
          Affine(ly.w_ih, ly.b_ih, x, width, g * H, gates.data());
          Affine(ly.w_hh, ly.b_hh, h.data(), H, g * H, gh.data());
          for (int u = 0; u < H; ++u) {
            if (lstm) {
              const float i = Sigmoid(gates[u] + gh[u]);
              const float fg = Sigmoid(gates[H + u] + gh[H + u]);
              const float gg = std::tanh(gates[2 * H + u] + gh[2 * H + u]);
              const float og = Sigmoid(gates[3 * H + u] + gh[3 * H + u]);
              c[u] = fg * c[u] + i * gg;
              h[u] = og * std::tanh(c[u]);
            } else {
              const float r = Sigmoid(gates[u] + gh[u]);
              const float z = Sigmoid(gates[H + u] + gh[H + u]);
              const float nn = std::tanh(gates[2 * H + u] + r * gh[2 * H + u]);
              h[u] = (1.0f - z) * nn + z * h[u];
            }
          }
          std::copy(h.begin(), h.end(), next.begin() + static_cast<std::ptrdiff_t>(t) * H);
        }
        seq.swap(next);
        width = H;
      }
    };
    run_rnn(s.lstm, "lstm", true);
    run_rnn(s.gru, "gru", false);
    // The head (or MLP) reads the last step.
    tmp.assign(seq.end() - width, seq.end());
    for (size_t l = 0; l < s.layers.size(); ++l) {
      const auto& ly = s.layers[l];
      observe(absl::StrCat("layers[", l, "].input"), tmp.data(), ly.in);
      std::vector<float> y(static_cast<size_t>(ly.out));
      Affine(ly.weight, ly.bias, tmp.data(), ly.in, ly.out, y.data());
      for (float& v : y) {
        switch (ly.activation) {
          case Activation::kRelu:
            v = std::max(v, 0.0f);
            break;
          case Activation::kTanh:
            v = std::tanh(v);
            break;
          case Activation::kSigmoid:
            v = Sigmoid(v);
            break;
          case Activation::kNone:
            break;
        }
      }
      tmp.swap(y);
    }
  }
  // Tensors whose range the source fixed (ModelSpec::input_ranges) record that range, as the
  // runtime uses it.
  std::map<std::string, SourceRange> fixed;
  if (o.use_source_ranges && !s.input_ranges.empty()) {
    const std::vector<std::string> names = QuantizableLayers(s);
    for (size_t k = 0; k < names.size() && k < s.input_ranges.size(); ++k) {
      if (!s.input_ranges[k].set) continue;
      fixed[k < s.lstm.size() + s.gru.size() ? names[k] + ".x" : names[k] + ".input"] =
          s.input_ranges[k];
    }
  }
  for (const std::string& name : order) {
    const quant::TensorCalibrator& tc = cal.at(name);
    ActivationRange r;
    r.tensor = name;
    if (const auto it = fixed.find(name); it != fixed.end()) {
      r.min = it->second.min;
      r.max = it->second.max;
    } else {
      auto range = tc.Range();
      if (!range.ok()) continue;  // Nothing finite observed: the runtime reports it, not us.
      r.min = range->first;
      r.max = range->second;
    }
    auto params = quant::ChooseQuantParams(r.min, r.max, quant::kU8Min, quant::kU8Max, false);
    if (params.ok()) r.params = *params;
    out.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status ArtifactError(const std::string& path, absl::StatusCode code,
                           const std::string& what) {
  return absl::Status(code, absl::StrCat(path, ": ", what));
}

}  // namespace

absl::StatusOr<Artifact> MakeArtifact(std::shared_ptr<const ModelSpec> spec,
                                      std::span<const float> calib_windows,
                                      const Int8Options& options, const ArtifactSource& source,
                                      std::unique_ptr<Model>* int8_model,
                                      Int8Description* description) {
  if (spec == nullptr) return absl::InvalidArgumentError("MakeArtifact: null spec");
  QSIG_RETURN_IF_ERROR(ValidateSpec(*spec));
  const size_t per = static_cast<size_t>(spec->window) * spec->input_size;
  if (calib_windows.empty() || calib_windows.size() % per != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MakeArtifact: ", calib_windows.size(),
                                                   " calibration floats are not a positive whole "
                                                   "number of windows of ",
                                                   spec->window, " x ", spec->input_size));
  }
  Artifact a;
  a.spec = *spec;
  a.source_path = source.source_path;
  a.source_format = source.source_format;
  a.qsig_build = QSIG_BUILD_DESCRIBE;
  a.created_unix_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  CalibrationRecord& c = a.calibration;
  c.options = options;
  c.source = source.calibration_source;
  c.first_ts_ns = source.first_ts_ns;
  c.last_ts_ns = source.last_ts_ns;
  const size_t n = calib_windows.size() / per;
  c.windows_seen = n;
  const size_t keep = std::min(n, kMaxStoredWindows);
  c.windows.reserve(keep * per);
  for (size_t i = 0; i < keep; ++i) {
    const size_t k = i * n / keep;  // Evenly spread over the calibration set.
    c.windows.insert(c.windows.end(), calib_windows.begin() + static_cast<std::ptrdiff_t>(k * per),
                     calib_windows.begin() + static_cast<std::ptrdiff_t>((k + 1) * per));
  }
  QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> int8,
                        CalibrateInt8Model(spec, c.windows, options, description));
  c.kernel_isa = KernelIsa();
  std::vector<float> ws(int8->workspace_floats());
  for (size_t i = 0; i < std::min(keep, kReferenceWindows); ++i) {
    c.reference_outputs.push_back(
        int8->Run(std::span<const float>(c.windows.data() + i * per, per), ws.data()));
  }
  QSIG_RETURN_IF_ERROR(QuantizeWeights(a.spec, options.reduce_range, a.int8_weights));
  QSIG_RETURN_IF_ERROR(ObserveRanges(a.spec, c.windows, options, a.activation_ranges));
  if (int8_model != nullptr) *int8_model = std::move(int8);
  return a;
}

absl::Status WriteArtifact(Artifact& a, const std::string& path) {
  pb::Artifact p;
  p.set_format_version(kArtifactFormatVersion);
  SpecToProto(a.spec, p.mutable_model());
  for (const Int8Weight& w : a.int8_weights) {
    pb::Int8Weight* q = p.add_int8_weights();
    q->set_tensor(w.tensor);
    q->set_rows(w.q.rows);
    q->set_cols(w.q.cols);
    q->set_data(reinterpret_cast<const char*>(w.q.data.data()), w.q.data.size());
    q->mutable_scales()->Add(w.q.scales.begin(), w.q.scales.end());
    q->mutable_row_sums()->Add(w.q.row_sums.begin(), w.q.row_sums.end());
  }
  for (const ActivationRange& r : a.activation_ranges) {
    pb::ActivationRange* q = p.add_activation_ranges();
    q->set_tensor(r.tensor);
    q->set_min(r.min);
    q->set_max(r.max);
    q->set_scale(r.params.scale);
    q->set_zero_point(r.params.zero_point);
    q->set_qmin(r.params.qmin);
    q->set_qmax(r.params.qmax);
  }
  const CalibrationRecord& c = a.calibration;
  pb::Calibration* pc = p.mutable_calibration();
  OptionsToProto(c.options, pc->mutable_options());
  pc->set_windows_seen(c.windows_seen);
  pc->set_window(a.spec.window);
  pc->set_input_size(a.spec.input_size);
  pc->mutable_windows()->Add(c.windows.begin(), c.windows.end());
  pc->set_first_ts_ns(c.first_ts_ns);
  pc->set_last_ts_ns(c.last_ts_ns);
  pc->set_source(c.source);
  pc->mutable_reference_outputs()->Add(c.reference_outputs.begin(), c.reference_outputs.end());
  pc->set_kernel_isa(c.kernel_isa);
  pb::Provenance* pv = p.mutable_provenance();
  pv->set_source_path(a.source_path);
  pv->set_source_format(a.source_format);
  pv->set_source_sha256(a.spec.sha256);
  pv->set_qsig_build(a.qsig_build);
  pv->set_created_unix_s(a.created_unix_s);

  std::string payload;
  if (!p.SerializeToString(&payload)) {
    return absl::InternalError(absl::StrCat(path, ": serializing the artifact failed"));
  }
  const auto digest = Sha256Bytes(payload);
  std::string file(kMagic, sizeof kMagic);
  PutU32(file, kArtifactFormatVersion);
  PutU32(file, 0);
  PutU64(file, payload.size());
  file.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  file += payload;

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::PermissionDeniedError(
          absl::StrCat(tmp, ": cannot open for writing: ", std::strerror(errno)));
    }
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::DataLossError(absl::StrCat(tmp, ": write failed (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot rename ", tmp, " into place: ", std::strerror(err)));
  }
  a.format_version = kArtifactFormatVersion;
  a.content_sha256 = ToHex(digest.data(), digest.size());
  return absl::OkStatus();
}

absl::StatusOr<Artifact> ReadArtifact(const std::string& path) {
  QSIG_ASSIGN_OR_RETURN(std::string file, internal::ReadFileBytes(path));
  using absl::StatusCode;
  const size_t magic_len = std::min(file.size(), sizeof kMagic);
  if (std::memcmp(file.data(), kMagic, magic_len) != 0) {
    return ArtifactError(path, StatusCode::kInvalidArgument,
                         "not a qsig artifact (the file does not start with \"QSIGART\"); give "
                         "a .qsig file written by `qsig quantize`");
  }
  if (file.size() < kHeaderSize) {
    return ArtifactError(path, StatusCode::kDataLoss,
                         absl::StrCat("truncated artifact: ", file.size(),
                                      " bytes, shorter "
                                      "than the ",
                                      kHeaderSize, "-byte header; copy it again"));
  }
  const uint32_t version = static_cast<uint32_t>(GetLe(file, 8, 4));
  if (version == 0 || version > kArtifactFormatVersion) {
    return ArtifactError(
        path, StatusCode::kFailedPrecondition,
        absl::StrCat("incompatible artifact: format version ", version,
                     "; this qsig reads "
                     "format version ",
                     kArtifactFormatVersion,
                     version > kArtifactFormatVersion
                         ? " (written by a newer qsig: upgrade qsig or re-quantize with this one)"
                         : " (invalid version)"));
  }
  const uint64_t size = GetLe(file, 16, 8);
  const uint64_t have = file.size() - kHeaderSize;
  if (have < size) {
    return ArtifactError(path, StatusCode::kDataLoss,
                         absl::StrCat("truncated artifact: the header announces ", size,
                                      " payload bytes, the file holds ", have, "; copy it again"));
  }
  if (have > size) {
    return ArtifactError(
        path, StatusCode::kDataLoss,
        absl::StrCat("corrupted artifact: ", have - size, " bytes after the announced payload"));
  }
  const std::string_view payload(file.data() + kHeaderSize, size);
  const auto digest = Sha256Bytes(payload);
  if (std::memcmp(digest.data(), file.data() + 24, 32) != 0) {
    return ArtifactError(
        path, StatusCode::kDataLoss,
        absl::StrCat("corrupted artifact: checksum mismatch (SHA-256 of the payload is ",
                     ToHex(digest.data(), 32), ", the header records ",
                     ToHex(reinterpret_cast<const uint8_t*>(file.data() + 24), 32),
                     "); do not serve it, copy or re-create it"));
  }
  pb::Artifact p;
  if (!p.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return ArtifactError(path, StatusCode::kDataLoss,
                         "corrupted artifact: the payload does not parse (the checksum matched, "
                         "so the writer was faulty)");
  }
  if (p.format_version() != version) {
    return ArtifactError(path, StatusCode::kDataLoss,
                         absl::StrCat("corrupted artifact: header format version ", version,
                                      " but payload format version ", p.format_version()));
  }
  Artifact a;
  a.format_version = version;
  a.content_sha256 = ToHex(digest.data(), 32);
  auto field_error = [&path](const absl::Status& st) {
    return ArtifactError(path, StatusCode::kInvalidArgument,
                         absl::StrCat("invalid artifact: ", st.message()));
  };
  auto spec = SpecFromProto(p.model());
  if (!spec.ok()) return field_error(spec.status());
  a.spec = std::move(*spec);
  a.spec.sha256 = p.provenance().source_sha256();
  if (absl::Status st = ValidateSpec(a.spec); !st.ok()) return field_error(st);
  for (const auto& q : p.int8_weights()) {
    Int8Weight w;
    w.tensor = q.tensor();
    w.q.rows = q.rows();
    w.q.cols = q.cols();
    w.q.data.resize(q.data().size());
    std::memcpy(w.q.data.data(), q.data().data(), q.data().size());
    w.q.scales.assign(q.scales().begin(), q.scales().end());
    w.q.row_sums.assign(q.row_sums().begin(), q.row_sums().end());
    if (w.q.data.size() != static_cast<size_t>(w.q.rows) * static_cast<size_t>(w.q.cols) ||
        w.q.scales.size() != static_cast<size_t>(w.q.rows) ||
        w.q.row_sums.size() != static_cast<size_t>(w.q.rows)) {
      return field_error(absl::InvalidArgumentError(
          absl::StrCat("int8_weights '", w.tensor, "' has inconsistent sizes")));
    }
    a.int8_weights.push_back(std::move(w));
  }
  for (const auto& q : p.activation_ranges()) {
    ActivationRange r;
    r.tensor = q.tensor();
    r.min = q.min();
    r.max = q.max();
    r.params.scale = q.scale();
    r.params.zero_point = q.zero_point();
    r.params.qmin = q.qmin();
    r.params.qmax = q.qmax();
    a.activation_ranges.push_back(std::move(r));
  }
  const pb::Calibration& pc = p.calibration();
  auto options = OptionsFromProto(pc.options());
  if (!options.ok()) return field_error(options.status());
  CalibrationRecord& c = a.calibration;
  c.options = std::move(*options);
  c.windows_seen = pc.windows_seen();
  c.windows.assign(pc.windows().begin(), pc.windows().end());
  c.first_ts_ns = pc.first_ts_ns();
  c.last_ts_ns = pc.last_ts_ns();
  c.source = pc.source();
  c.reference_outputs.assign(pc.reference_outputs().begin(), pc.reference_outputs().end());
  c.kernel_isa = pc.kernel_isa();
  const size_t per = static_cast<size_t>(a.spec.window) * a.spec.input_size;
  if (c.windows.empty() || c.windows.size() % per != 0 ||
      c.windows.size() / per > kMaxStoredWindows ||
      c.reference_outputs.size() > c.windows.size() / per) {
    return field_error(absl::InvalidArgumentError(
        absl::StrCat("calibration.windows holds ", c.windows.size(), " floats, not 1..",
                     kMaxStoredWindows, " windows of ", a.spec.window, " x ", a.spec.input_size)));
  }
  a.source_path = p.provenance().source_path();
  a.source_format = p.provenance().source_format();
  a.qsig_build = p.provenance().qsig_build();
  a.created_unix_s = p.provenance().created_unix_s();
  return a;
}

absl::Status VerifyInt8Model(const Artifact& a, const Model& m, size_t max_windows) {
  const auto& ref = a.calibration.reference_outputs;
  const size_t per = static_cast<size_t>(a.spec.window) * a.spec.input_size;
  std::vector<float> ws(m.workspace_floats());
  double rms = 0;
  for (float v : ref) rms += static_cast<double>(v) * v;
  rms = ref.empty() ? 0.0 : std::sqrt(rms / static_cast<double>(ref.size()));
  // Same build and same kernels: the rebuild must be bit-identical. Another ISA's vectorized
  // sigmoid/tanh, or another qsig build's kernels (summation order, FMA contraction), may
  // differ in the last bits, so allow 1% of the output RMS there: an upgrade of the server does
  // not strand the artifacts it was serving, and a different model still fails.
  const bool same_isa = a.calibration.kernel_isa == KernelIsa();
  const bool same_build = a.qsig_build == QSIG_BUILD_DESCRIBE &&
                          a.qsig_build.find("dirty") == std::string::npos &&
                          a.qsig_build != "unknown";
  const bool exact = same_isa && same_build;
  const double tol = exact ? 0.0 : 1e-2 * rms + 1e-6;
  const size_t n = max_windows == 0 ? ref.size() : std::min(ref.size(), max_windows);
  if (n * per > a.calibration.windows.size()) {
    return absl::DataLossError(
        absl::StrFormat("artifact '%s': %zu reference outputs but only %zu stored windows",
                        a.spec.name, n, per ? a.calibration.windows.size() / per : 0));
  }
  for (size_t i = 0; i < n; ++i) {
    const float y =
        m.Run(std::span<const float>(a.calibration.windows.data() + i * per, per), ws.data());
    const bool ok = exact ? std::memcmp(&y, &ref[i], sizeof y) == 0
                          : std::fabs(static_cast<double>(y) - ref[i]) <= tol;
    if (!ok) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "artifact '%s': the rebuilt INT8 model gives %.9g on calibration window %zu where the "
          "quantized model gave %.9g (%s; kernels %s vs %s, qsig %s vs %s); the runtime "
          "differs from the one that was validated: re-quantize with this qsig build",
          a.spec.name, y, i, ref[i],
          exact ? "must be bit-identical" : absl::StrFormat("tolerance %.3g", tol), KernelIsa(),
          a.calibration.kernel_isa, QSIG_BUILD_DESCRIBE, a.qsig_build));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> BuildInt8Model(const Artifact& a,
                                                      Int8Description* description) {
  auto spec = std::make_shared<const ModelSpec>(a.spec);
  Int8Description d;
  QSIG_ASSIGN_OR_RETURN(std::unique_ptr<Model> m,
                        CalibrateInt8Model(spec, a.calibration.windows, a.calibration.options, &d));
  QSIG_RETURN_IF_ERROR(VerifyInt8Model(a, *m));
  if (description != nullptr) *description = std::move(d);
  return m;
}

}  // namespace qsig::models::io
