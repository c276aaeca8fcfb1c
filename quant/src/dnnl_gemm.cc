// oneDNN int8 matmul backend and the per-shape backend chooser (dnnl_gemm.h).
#include "qsig/quant/dnnl_gemm.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace qsig::quant {

struct DnnlGemmU8S8F32::Impl {
  dnnl::engine engine;
  dnnl::stream stream;
  dnnl::matmul prim;
  dnnl::memory src, weights, dst, scratchpad;
  std::string impl_name;
  const float* bias = nullptr;
  int m = 0, rows = 0;
  ptrdiff_t ldy = 0;
};

namespace {

// One CPU engine for the process: creating it is not free and every primitive may share it.
const dnnl::engine& CpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace

DnnlGemmU8S8F32::DnnlGemmU8S8F32(std::unique_ptr<Impl> impl, int m, int rows, int cols)
    : impl_(std::move(impl)), m_(m), rows_(rows), cols_(cols) {}
DnnlGemmU8S8F32::~DnnlGemmU8S8F32() = default;

const char* DnnlGemmU8S8F32::impl_name() const noexcept { return impl_->impl_name.c_str(); }

absl::StatusOr<std::unique_ptr<DnnlGemmU8S8F32>> DnnlGemmU8S8F32::Create(
    const PackedWeightsS8& w, int m, const DequantEpilogue& e, ptrdiff_t ldx, ptrdiff_t ldy) {
  if (m <= 0 || w.rows <= 0 || w.cols <= 0 || ldx < w.cols || ldy < w.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("DnnlGemmU8S8F32::Create: need m > 0, ldx >= cols, ldy >= rows; got m=", m,
                     " rows=", w.rows, " cols=", w.cols, " ldx=", ldx, " ldy=", ldy));
  }
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  using dims = dnnl::memory::dims;
  try {
    auto impl = std::make_unique<Impl>();
    impl->engine = CpuEngine();
    impl->stream = dnnl::stream(impl->engine);
    impl->bias = e.bias;
    impl->m = m;
    impl->rows = w.rows;
    impl->ldy = ldy;
    const dnnl::memory::dim M = m, K = w.cols, N = w.rows;
    const dnnl::memory::desc src_md({M, K}, dt::u8, dims{ldx, 1});
    const dnnl::memory::desc wei_any_md({K, N}, dt::s8, tag::any);
    const dnnl::memory::desc dst_md({M, N}, dt::f32, dims{ldy, 1});

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    std::vector<float> oscales(static_cast<size_t>(N));
    for (int r = 0; r < w.rows; ++r) oscales[r] = w.scales[r] * e.x_scale;  // as gemm_ref.cc
    attr.set_output_scales(1 << 1, oscales);
    if (e.x_zero_point != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {e.x_zero_point});

    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any_md, dst_md), attr,
                                          impl->engine);
    impl->impl_name = pd.impl_info_str();
    impl->prim = dnnl::matmul(pd);

    // Weights: W is rows x cols row-major, i.e. the K x N matrix in "ba" order; reorder once.
    dnnl::memory user_w({{K, N}, dt::s8, tag::ba}, impl->engine);
    auto* uw = static_cast<int8_t*>(user_w.get_data_handle());
    for (int r = 0; r < w.rows; ++r) {
      for (int c = 0; c < w.cols; ++c) uw[static_cast<size_t>(r) * w.cols + c] = w.at(r, c);
    }
    impl->weights = dnnl::memory(pd.weights_desc(), impl->engine);
    dnnl::reorder(user_w, impl->weights).execute(impl->stream, user_w, impl->weights);
    impl->stream.wait();

    impl->src = dnnl::memory(src_md, impl->engine, DNNL_MEMORY_NONE);
    impl->dst = dnnl::memory(dst_md, impl->engine, DNNL_MEMORY_NONE);
    impl->scratchpad = dnnl::memory(pd.scratchpad_desc(), impl->engine);
    return std::unique_ptr<DnnlGemmU8S8F32>(
        new DnnlGemmU8S8F32(std::move(impl), m, w.rows, w.cols));
  } catch (const dnnl::error& err) {
    return absl::UnimplementedError(absl::StrCat(
        "DnnlGemmU8S8F32::Create: oneDNN int8 matmul for m=", m, " rows=", w.rows, " cols=", w.cols,
        " failed: ", err.what(), " (status ", err.status, "); use QSIG_GEMM_BACKEND=qsig"));
  } catch (const std::exception& ex) {
    return absl::InternalError(absl::StrCat("DnnlGemmU8S8F32::Create: ", ex.what()));
  }
}

bool DnnlGemmU8S8F32::Run(const uint8_t* x, float* y) noexcept {
  Impl& d = *impl_;
  try {
    d.src.set_data_handle(const_cast<uint8_t*>(x));
    d.dst.set_data_handle(y);
    d.prim.execute(d.stream, {{DNNL_ARG_SRC, d.src},
                              {DNNL_ARG_WEIGHTS, d.weights},
                              {DNNL_ARG_DST, d.dst},
                              {DNNL_ARG_SCRATCHPAD, d.scratchpad}});
    d.stream.wait();
  } catch (...) {
    return false;
  }
  if (d.bias != nullptr) {
    for (int i = 0; i < d.m; ++i) {
      float* yi = y + i * d.ldy;
      for (int r = 0; r < d.rows; ++r) yi[r] = yi[r] + d.bias[r];
    }
  }
  return true;
}

const char* GemmBackendName(GemmBackend b) { return b == GemmBackend::kOnednn ? "onednn" : "qsig"; }

absl::StatusOr<GemmBackendChoice> EnvGemmBackend() {
  GemmBackendChoice c;
  const char* v = std::getenv("QSIG_GEMM_BACKEND");
  if (v == nullptr) return c;
  const std::string_view s(v);
  if (s.empty() || s == "auto") return c;
  if (s == "qsig" || s == "onednn") {
    c.forced = true;
    c.backend = s == "qsig" ? GemmBackend::kQsig : GemmBackend::kOnednn;
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("environment QSIG_GEMM_BACKEND=\"", v, "\": expected auto, qsig or onednn"));
}

namespace {

template <typename F>
double TimeCalls(F&& f, int calls) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / calls;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

absl::StatusOr<GemmBackendChoice> ChooseGemmBackend(const PackedWeightsS8& w, int m,
                                                    const DequantEpilogue& e, ptrdiff_t ldx,
                                                    ptrdiff_t ldy, int iterations) {
  absl::StatusOr<GemmBackendChoice> env = EnvGemmBackend();
  if (!env.ok()) return env.status();
  if (env->forced) return *env;
  GemmBackendChoice c;
  absl::StatusOr<std::unique_ptr<DnnlGemmU8S8F32>> dnnl =
      DnnlGemmU8S8F32::Create(w, m, e, ldx, ldy);
  if (!dnnl.ok()) return c;  // oneDNN cannot do it: qsig, unmeasured

  // Inputs with the real shape; values do not change the time of either backend.
  std::vector<uint8_t> x(static_cast<size_t>(m - 1) * ldx + w.cols, 128);
  std::vector<float> y(static_cast<size_t>(m - 1) * ldy + w.rows);
  auto run_qsig = [&] { GemmU8S8F32(m, x.data(), ldx, w, e, y.data(), ldy); };
  bool dnnl_ok = true;
  auto run_dnnl = [&] { dnnl_ok = (*dnnl)->Run(x.data(), y.data()) && dnnl_ok; };

  constexpr int kCallsPerSample = 10;
  const int warmup = std::max(10, iterations / 6);
  TimeCalls(run_qsig, warmup);
  TimeCalls(run_dnnl, warmup);
  const int samples = std::max(3, iterations / kCallsPerSample);
  std::vector<double> tq, td;
  tq.reserve(samples);
  td.reserve(samples);
  // Interleaved, so a burst of load from a neighbour hits both backends alike.
  for (int s = 0; s < samples; ++s) {
    tq.push_back(TimeCalls(run_qsig, kCallsPerSample));
    td.push_back(TimeCalls(run_dnnl, kCallsPerSample));
  }
  c.qsig_ns = Median(std::move(tq));
  if (!dnnl_ok) return c;
  c.onednn_ns = Median(std::move(td));
  c.backend = c.onednn_ns < c.qsig_ns ? GemmBackend::kOnednn : GemmBackend::kQsig;
  return c;
}

absl::StatusOr<GemmU8S8F32Auto> GemmU8S8F32Auto::CreateWith(GemmBackend backend,
                                                            const PackedWeightsS8& w, int m,
                                                            const DequantEpilogue& e, ptrdiff_t ldx,
                                                            ptrdiff_t ldy) {
  if (m <= 0 || w.rows <= 0 || w.cols <= 0 || ldx < w.cols || ldy < w.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("GemmU8S8F32Auto: need m > 0, ldx >= cols, ldy >= rows; got m=", m,
                     " rows=", w.rows, " cols=", w.cols, " ldx=", ldx, " ldy=", ldy));
  }
  GemmU8S8F32Auto a;
  a.w_ = &w;
  a.e_ = e;
  a.m_ = m;
  a.ldx_ = ldx;
  a.ldy_ = ldy;
  a.choice_.backend = backend;
  if (backend == GemmBackend::kOnednn) {
    absl::StatusOr<std::unique_ptr<DnnlGemmU8S8F32>> d = DnnlGemmU8S8F32::Create(w, m, e, ldx, ldy);
    if (!d.ok()) return d.status();
    a.dnnl_ = std::move(*d);
  }
  return a;
}

absl::StatusOr<GemmU8S8F32Auto> GemmU8S8F32Auto::Create(const PackedWeightsS8& w, int m,
                                                        const DequantEpilogue& e, ptrdiff_t ldx,
                                                        ptrdiff_t ldy, int iterations) {
  absl::StatusOr<GemmBackendChoice> c = ChooseGemmBackend(w, m, e, ldx, ldy, iterations);
  if (!c.ok()) return c.status();
  absl::StatusOr<GemmU8S8F32Auto> a = CreateWith(c->backend, w, m, e, ldx, ldy);
  if (!a.ok()) return a.status();
  a->choice_ = *c;
  return a;
}

}  // namespace qsig::quant
