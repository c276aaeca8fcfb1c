// MakeFp32Model and the builder shared with INT8 calibration: a Runtime whose every matmul is
// FP32, or INT8 where a plan says so.
#include <memory>
#include <utility>

#include "internal/builder.h"
#include "qsig/models/model.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/onednn_gemm.h"

namespace qsig::models {
namespace internal {
namespace {

template <class L>
RnnLayer MakeRnn(const L& ly, bool gru) {
  RnnLayer r;
  r.gru = gru;
  r.in = ly.input_size;
  r.hidden = ly.hidden_size;
  r.gates = (gru ? 3 : 4) * ly.hidden_size;
  r.gates_pad = static_cast<int>(Pad16(static_cast<size_t>(r.gates)));
  r.bias_x.resize(static_cast<size_t>(r.gates_pad));
  r.bias_h.resize(static_cast<size_t>(gru ? r.gates_pad : 0));
  for (int k = 0; k < r.gates; ++k) {
    const size_t i = static_cast<size_t>(k);
    if (gru) {
      r.bias_x[i] = ly.b_ih[i];
      r.bias_h[i] = ly.b_hh[i];
    } else {
      r.bias_x[i] = ly.b_ih[i] + ly.b_hh[i];
    }
  }
  return r;
}

void AddInto(AlignedVec<float>& bias, const std::vector<float>& fold) {
  for (size_t i = 0; i < fold.size(); ++i) bias[i] += fold[i];
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> BuildRuntime(std::shared_ptr<const ModelSpec> spec,
                                                      const QuantPlan& plan) {
  // An unknown QSIG_MAX_ISA is an error, not a silent choice of kernels.
  if (absl::StatusOr<quant::Isa> cap = quant::EnvMaxIsa(); !cap.ok()) return cap.status();
  // So is an unknown QSIG_ONEDNN (the INT8 builds' per-shape backend chooser reads it).
  if (auto m = quant::ActiveOnednnMode(); !m.ok()) return m.status();
  const ModelSpec& s = *spec;
  std::vector<RnnLayer> rnn;
  std::vector<HeadLayer> head;
  const bool is_gru = s.arch == Arch::kGru;
  const size_t n_rnn = is_gru ? s.gru.size() : s.lstm.size();
  bool any_int8 = false, any_fp32 = false;
  auto int8_op = [&plan](size_t id) { return id < plan.ops.size() && plan.ops[id].int8; };
  for (size_t l = 0; l < n_rnn; ++l) {
    const int in = is_gru ? s.gru[l].input_size : s.lstm[l].input_size;
    const int hid = is_gru ? s.gru[l].hidden_size : s.lstm[l].hidden_size;
    const std::vector<float>& w_ih = is_gru ? s.gru[l].w_ih : s.lstm[l].w_ih;
    const std::vector<float>& w_hh = is_gru ? s.gru[l].w_hh : s.lstm[l].w_hh;
    RnnLayer r = is_gru ? MakeRnn(s.gru[l], true) : MakeRnn(s.lstm[l], false);
    const int g = r.gates;
    if (int8_op(2 * l)) {
      std::vector<float> fold;
      const bool first = l == 0;
      r.ih = MakeInt8Matmul(w_ih, g, in, plan.ops[2 * l].in,
                            first ? s.feature_mean : std::vector<float>{},
                            first ? s.feature_std : std::vector<float>{}, &fold, plan.w_max);
      AddInto(r.bias_x, fold);
      any_int8 = true;
    } else {
      r.ih = MakeFp32Matmul(w_ih, g, in);
      any_fp32 = true;
    }
    if (int8_op(2 * l + 1)) {
      std::vector<float> fold;
      r.hh = MakeInt8Matmul(w_hh, g, hid, plan.ops[2 * l + 1].in, {}, {}, &fold, plan.w_max);
      AddInto(is_gru ? r.bias_h : r.bias_x, fold);
      any_int8 = true;
    } else {
      r.hh = MakeFp32Matmul(w_hh, g, hid);
      any_fp32 = true;
    }
    if (l < plan.c_step.size()) r.c_step = plan.c_step[l];
    rnn.push_back(std::move(r));
  }
  for (size_t k = 0; k < s.layers.size(); ++k) {
    const LinearLayer& ly = s.layers[k];
    HeadLayer h;
    h.in = ly.in;
    h.out = ly.out;
    h.act = ly.activation;
    const size_t id = 2 * n_rnn + k;
    if (int8_op(id)) {
      std::vector<float> fold;
      const bool first = n_rnn == 0 && k == 0;
      h.w = MakeInt8Matmul(ly.weight, ly.out, ly.in, plan.ops[id].in,
                           first ? s.feature_mean : std::vector<float>{},
                           first ? s.feature_std : std::vector<float>{}, &fold, plan.w_max);
      h.bias.resize(static_cast<size_t>(h.w.rows_pad()));
      for (int r = 0; r < ly.out; ++r) {
        h.bias[static_cast<size_t>(r)] =
            ly.bias[static_cast<size_t>(r)] + fold[static_cast<size_t>(r)];
      }
      any_int8 = true;
    } else {
      h.w = MakeFp32Matmul(ly.weight, ly.out, ly.in);
      h.bias.resize(static_cast<size_t>(h.w.rows_pad()));
      for (int r = 0; r < ly.out; ++r)
        h.bias[static_cast<size_t>(r)] = ly.bias[static_cast<size_t>(r)];
      any_fp32 = true;
    }
    head.push_back(std::move(h));
  }
  const char* precision = any_int8 ? (any_fp32 ? "mixed" : "int8") : "fp32";
  return std::make_unique<Runtime>(std::move(spec), std::move(rnn), std::move(head), precision);
}

}  // namespace internal

std::unique_ptr<Model> MakeFp32Model(std::shared_ptr<const ModelSpec> spec) {
  if (spec == nullptr || !ValidateSpec(*spec).ok()) return nullptr;
  auto rt = internal::BuildRuntime(std::move(spec), internal::QuantPlan{});
  if (!rt.ok()) return nullptr;
  return std::move(*rt);
}

}  // namespace qsig::models
