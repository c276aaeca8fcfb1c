#include "qsig/quant/onednn_gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "oneapi/dnnl/dnnl.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace qsig::quant {

namespace {
// Execution contexts per shape: concurrent callers beyond this many run the own kernel.
constexpr int kContexts = 4;
}  // namespace

struct OnednnGemmU8S8::Impl {
  struct Context {
    dnnl::stream stream;
    dnnl::memory src, dst, scratch;
    AlignedVec<int32_t> acc;
    std::atomic<bool> busy{false};
  };
  dnnl::engine engine;
  dnnl::matmul prim;
  dnnl::memory weights;
  AlignedVec<float> scale;  // rows_pad
  std::unique_ptr<Context[]> ctx;
  int n = 0, rows_pad = 0;
  size_t ldx = 0, ldy = 0;
  bool has_scratch = false;
  std::string impl;
  mutable std::atomic<uint64_t> runs{0};
};

OnednnGemmU8S8::OnednnGemmU8S8(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnednnGemmU8S8::~OnednnGemmU8S8() = default;

absl::StatusOr<std::unique_ptr<OnednnGemmU8S8>> OnednnGemmU8S8::Create(const PackedS8& w, int n,
                                                                       size_t ldx, size_t ldy) {
  if (n < 1 || w.rows_pad < 1 || w.cols_pad < 1 || ldx < static_cast<size_t>(w.cols_pad) ||
      (n > 1 && ldy < static_cast<size_t>(w.rows_pad))) {
    return absl::InvalidArgumentError(absl::StrCat("oneDNN GEMM: bad shape ", w.rows_pad, "x",
                                                   w.cols_pad, " n=", n, " ldx=", ldx,
                                                   " ldy=", ldy));
  }
  auto p = std::make_unique<Impl>();
  try {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    using dims = dnnl::memory::dims;
    p->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    const dnnl::memory::dim M = n, K = w.cols_pad, N = w.rows_pad;
    const dnnl::memory::desc src_md({M, K}, dt::u8, dims{static_cast<dnnl::memory::dim>(ldx), 1});
    const dnnl::memory::desc wei_md({K, N}, dt::s8, tag::any);
    const dnnl::memory::desc dst_md({M, N}, dt::s32, tag::ab);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per context: concurrent calls
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), attr,
                                          p->engine);
    p->impl = pd.impl_info_str();
    p->prim = dnnl::matmul(pd);
    // W (rows_pad x cols_pad, padding zero) row-major is the K x N matrix in "ba" order.
    std::vector<int8_t> rowmajor(static_cast<size_t>(N) * static_cast<size_t>(K), 0);
    for (int r = 0; r < w.rows; ++r) {
      for (int c = 0; c < w.cols; ++c) {
        rowmajor[static_cast<size_t>(r) * static_cast<size_t>(K) + static_cast<size_t>(c)] =
            PackedAt(w, r, c);
      }
    }
    dnnl::stream s(p->engine);
    dnnl::memory user_w({{K, N}, dt::s8, tag::ba}, p->engine, rowmajor.data());
    p->weights = dnnl::memory(pd.weights_desc(), p->engine);
    dnnl::reorder(user_w, p->weights).execute(s, user_w, p->weights);
    s.wait();
    const dnnl::memory::desc scratch_md = pd.scratchpad_desc();
    p->has_scratch = scratch_md.get_size() > 0;
    p->ctx = std::make_unique<Impl::Context[]>(kContexts);
    for (int i = 0; i < kContexts; ++i) {
      Impl::Context& c = p->ctx[i];
      c.stream = dnnl::stream(p->engine);
      c.acc.resize(static_cast<size_t>(M) * static_cast<size_t>(N));
      c.src = dnnl::memory(src_md, p->engine, DNNL_MEMORY_NONE);
      c.dst = dnnl::memory(dst_md, p->engine, c.acc.data());
      if (p->has_scratch) c.scratch = dnnl::memory(scratch_md, p->engine);
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("oneDNN GEMM ", w.rows_pad, "x", w.cols_pad, " n=", n, ": ", e.what()));
  }
  p->scale.resize(static_cast<size_t>(w.rows_pad));
  for (int r = 0; r < w.rows_pad; ++r) {
    p->scale[static_cast<size_t>(r)] = Bf16ToFloat(w.scales[static_cast<size_t>(r)]);
  }
  p->n = n;
  p->rows_pad = w.rows_pad;
  p->ldx = ldx;
  p->ldy = ldy;
  return std::unique_ptr<OnednnGemmU8S8>(new OnednnGemmU8S8(std::move(p)));
}

bool OnednnGemmU8S8::Run(const uint8_t* x, const float* add, size_t ldadd,
                         float* y) const noexcept {
  Impl& p = *impl_;
  Impl::Context* c = nullptr;
  for (int i = 0; i < kContexts && c == nullptr; ++i) {
    if (!p.ctx[i].busy.exchange(true, std::memory_order_acquire)) c = &p.ctx[i];
  }
  if (c == nullptr) return false;
  // The C API: no exceptions on this path.
  bool ok = dnnl_memory_set_data_handle(c->src.get(), const_cast<uint8_t*>(x)) == dnnl_success;
  if (ok) {
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->src.get()},
                               {DNNL_ARG_WEIGHTS, p.weights.get()},
                               {DNNL_ARG_DST, c->dst.get()},
                               {DNNL_ARG_SCRATCHPAD, p.has_scratch ? c->scratch.get() : nullptr}};
    ok = dnnl_primitive_execute(p.prim.get(), c->stream.get(), p.has_scratch ? 4 : 3, args) ==
             dnnl_success &&
         dnnl_stream_wait(c->stream.get()) == dnnl_success;
  }
  if (ok) {
    // The kernels' epilogue: float(acc) * scale, then + add (no FMA: -ffp-contract=off).
    const size_t rp = static_cast<size_t>(p.rows_pad);
    for (int i = 0; i < p.n; ++i) {
      const int32_t* a = c->acc.data() + static_cast<size_t>(i) * rp;
      const float* ai = add ? add + static_cast<size_t>(i) * ldadd : nullptr;
      float* yi = y + static_cast<size_t>(i) * p.ldy;
      for (size_t r = 0; r < rp; ++r) {
        const float v = static_cast<float>(a[r]) * p.scale[r];
        yi[r] = ai ? v + ai[r] : v;
      }
    }
  }
  c->busy.store(false, std::memory_order_release);
  if (ok) p.runs.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

bool OnednnGemmU8S8::Serves(int n, size_t ldx, size_t ldy) const noexcept {
  return n == impl_->n && ldx == impl_->ldx && (n == 1 || ldy == impl_->ldy);
}
int OnednnGemmU8S8::n() const noexcept { return impl_->n; }
uint64_t OnednnGemmU8S8::runs() const noexcept {
  return impl_->runs.load(std::memory_order_relaxed);
}
const std::string& OnednnGemmU8S8::impl() const noexcept { return impl_->impl; }

namespace {
// 0: none, else 1 + OnednnMode.
std::atomic<int> g_mode_override{0};
}  // namespace

const char* OnednnModeName(OnednnMode m) noexcept {
  switch (m) {
    case OnednnMode::kOff:
      return "off";
    case OnednnMode::kAuto:
      return "auto";
    case OnednnMode::kPreferIfExact:
      return "prefer_if_exact";
  }
  return "?";
}

absl::StatusOr<OnednnMode> ActiveOnednnMode() {
  if (const int o = g_mode_override.load(std::memory_order_acquire); o != 0) {
    return static_cast<OnednnMode>(o - 1);
  }
  const char* v = std::getenv("QSIG_ONEDNN");
  if (v == nullptr || *v == '\0') return OnednnMode::kAuto;
  const std::string s = absl::AsciiStrToLower(v);
  if (s == "off") return OnednnMode::kOff;
  if (s == "auto") return OnednnMode::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("QSIG_ONEDNN='", v, "' is not a oneDNN backend mode (accepted: off, auto)"));
}

void SetOnednnModeForTesting(OnednnMode m) noexcept {
  g_mode_override.store(static_cast<int>(m) + 1, std::memory_order_release);
}
void ClearOnednnModeForTesting() noexcept { g_mode_override.store(0, std::memory_order_release); }

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

GemmChoice ChooseGemmBackend(const Kernels& k, const PackedS8& w, int n, size_t ldx, size_t ldy,
                             OnednnMode mode, int reps, std::unique_ptr<OnednnGemmU8S8>* backend) {
  GemmChoice ch;
  ch.rows = w.rows;
  ch.cols = w.cols;
  ch.n = n;
  if (backend != nullptr) backend->reset();
  if (mode == OnednnMode::kOff) {
    ch.reason = "QSIG_ONEDNN=off";
    return ch;
  }
  auto b = OnednnGemmU8S8::Create(w, n, ldx, ldy);
  if (!b.ok()) {
    ch.reason = absl::StrCat("oneDNN unavailable: ", b.status().message());
    return ch;
  }
  ch.onednn_impl = (*b)->impl();
  // The test block: fixed seed, the first and last vectors all 255 (the saturation case),
  // padding columns 0 as quantize_u8 leaves them; a random addend per vector.
  const size_t ldy_eff = n > 1 ? ldy : static_cast<size_t>(w.rows_pad);
  std::mt19937 rng(14);
  std::vector<uint8_t> x(static_cast<size_t>(n) * ldx, 0);
  for (int i = 0; i < n; ++i) {
    for (int c = 0; c < w.cols; ++c) {
      x[static_cast<size_t>(i) * ldx + static_cast<size_t>(c)] =
          (i == 0 || i == n - 1) ? 255 : static_cast<uint8_t>(rng() & 0xff);
    }
  }
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  std::vector<float> add(static_cast<size_t>(n) * static_cast<size_t>(w.rows_pad));
  for (float& a : add) a = ud(rng);
  const size_t ysize = static_cast<size_t>(n - 1) * ldy_eff + static_cast<size_t>(w.rows_pad);
  std::vector<float> want(ysize, 0.0f), got(ysize, 0.0f);
  const size_t ldadd = static_cast<size_t>(w.rows_pad);
  k.gemm_u8s8f32(w, n, x.data(), ldx, add.data(), ldadd, want.data(), ldy_eff);
  if (!(*b)->Run(x.data(), add.data(), ldadd, got.data())) {
    ch.reason = "oneDNN failed to run";
    return ch;
  }
  ch.exact = true;
  for (int i = 0; i < n && ch.exact; ++i) {
    const size_t off = static_cast<size_t>(i) * ldy_eff;
    ch.exact = std::memcmp(want.data() + off, got.data() + off,
                           static_cast<size_t>(w.rows_pad) * sizeof(float)) == 0;
  }
  // Time both (interleaved, after the warm-up run above).
  using Clock = std::chrono::steady_clock;
  std::vector<double> own, dnn;
  for (int r = 0; r < std::max(1, reps); ++r) {
    auto t0 = Clock::now();
    k.gemm_u8s8f32(w, n, x.data(), ldx, add.data(), ldadd, want.data(), ldy_eff);
    auto t1 = Clock::now();
    (*b)->Run(x.data(), add.data(), ldadd, got.data());
    auto t2 = Clock::now();
    own.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    dnn.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  ch.measured = true;
  ch.own_us = Median(own);
  ch.onednn_us = Median(dnn);
  const bool faster = ch.own_us > ch.onednn_us * kOnednnMargin;
  if (!ch.exact) {
    ch.reason = absl::StrFormat("oneDNN (%s) not bit-exact on the model's weights", ch.onednn_impl);
  } else if (mode == OnednnMode::kPreferIfExact) {
    ch.onednn = true;
    ch.reason = "bit-exact; chosen whatever the speed (test mode prefer_if_exact)";
  } else if (faster) {
    ch.onednn = true;
    ch.reason = absl::StrFormat("bit-exact and %.2fx faster", ch.own_us / ch.onednn_us);
  } else {
    ch.reason = absl::StrFormat("bit-exact but not %.0f%% faster (%.2fx)",
                                (kOnednnMargin - 1.0) * 100.0, ch.own_us / ch.onednn_us);
  }
  if (ch.onednn && backend != nullptr) *backend = std::move(*b);
  return ch;
}

}  // namespace qsig::quant
