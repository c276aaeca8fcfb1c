// The kernel layer per ISA table (qsig/quant/kernels.h) on the runtime's shapes, beside its
// measured peer: oneDNN's int8 matmul.
//
// Names: BM_GemmU8S8F32_<Isa>/<rows>x<cols>/N<n> (u8 x s8 -> s32, then float(acc) * scale + add:
// Kernels::gemm_u8s8f32 for n vectors; N1 is the batch-1 GEMV of every tick, N8 a stacked LSTM's
// time block of input projections, N16 a StepBatch), BM_GemmU8S8F32_Avx2_7bit (7-bit weights: the
// AVX2 unsplit path), BM_GemmS16S8F32_<Isa> (s16 activations: the first layer), BM_LstmCell_<Isa>
// /<hidden>, BM_GemmU8S8F32_Onednn (the same GEMM as a oneDNN u8 x s8 -> s32 matmul followed by
// qsig's epilogue, so the output formula is the same), BM_Calibrate_<method>. Tables the CPU lacks
// are not registered. items/s counts multiply-accumulates (rows * cols * n).
// The oneDNN label says whether its result equalled the reference bit for bit on this host for
// 8-bit weights and extreme activations (oneDNN's non-VNNI x86 int8 kernels sum u8 x s8 pairs with
// the saturating vpmaddubsw), and for 7-bit weights.
// BM_LstmA_DnnlInt8 / _DnnlF32 (dnnl_lstm_bench.cc): oneDNN's LSTM primitive on the LSTM-A window.
// Context: the CPU brand and the active ISA (QSIG_MAX_ISA caps it). oneDNN is built with OpenMP
// here: set OMP_NUM_THREADS=1 for batch-1 latency.
//
//   ninja -C build qsig_bench_quant && OMP_NUM_THREADS=1 build/bench/quant/qsig_bench_quant
#include <benchmark/benchmark.h>

#include <exception>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "qsig/quant/calibration.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/kernels.h"

namespace qsig::quant {
namespace {

const char* IsaTag(Isa isa) {
  switch (isa) {
    case Isa::kRef:
      return "Ref";
    case Isa::kAvx2:
      return "Avx2";
    case Isa::kAvxVnni:
      return "AvxVnni";
    case Isa::kAvx512Vnni:
      return "Avx512Vnni";
  }
  return "Unknown";
}

struct Shape {
  int rows, cols, n;
};
// LSTM-A (hidden 64: 256 gates x 64), LSTM-B-like (hidden 128), a wide layer (hidden 256); batch
// 1, a time block of 8, a StepBatch of 16.
constexpr Shape kShapes[] = {{256, 64, 1},   {256, 64, 8},   {512, 128, 1},  {512, 128, 8},
                             {512, 128, 16}, {1024, 256, 1}, {1024, 256, 8}, {1024, 256, 16}};

// Appends (GCC 12 warns falsely, -Wrestrict, on chains of std::string operator+).
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out.append(p);
  return out;
}

std::string ShapeName(const Shape& s) {
  return Cat({std::to_string(s.rows), "x", std::to_string(s.cols), "/N", std::to_string(s.n)});
}

// Packed weights in [-wmax, wmax] with bf16 scales, activations, addends.
struct Fixture {
  PackedS8 w;
  std::vector<int8_t> rowmajor;
  std::vector<uint8_t> x;
  std::vector<int16_t> x16;
  std::vector<float> add, y;
  size_t ldx = 0, ldy = 0;
};

Fixture MakeFixture(const Shape& s, int wmax, bool extreme_x = false) {
  std::mt19937 rng(1);
  Fixture f;
  f.rowmajor.resize(static_cast<size_t>(s.rows) * s.cols);
  std::uniform_int_distribution<int> wd(-wmax, wmax), xd(0, 255), sd(-3000, 3000);
  for (int8_t& v : f.rowmajor) v = static_cast<int8_t>(wd(rng));
  for (size_t i = 0; i < f.rowmajor.size(); i += 3) {
    f.rowmajor[i] = static_cast<int8_t>(i % 2 ? wmax : -wmax);
  }
  f.w = PackS8(f.rowmajor.data(), s.rows, s.cols);
  for (int r = 0; r < f.w.rows_pad; ++r) {
    f.w.scales[static_cast<size_t>(r)] = FloatToBf16Truncate(RoundUpToBf16(0.013f + 1e-4f * r));
  }
  f.ldx = static_cast<size_t>(f.w.cols_pad);
  f.ldy = static_cast<size_t>(f.w.rows_pad);
  f.x.assign(f.ldx * s.n, 0);
  f.x16.assign(f.ldx * s.n, 0);
  for (int i = 0; i < s.n; ++i) {
    for (int c = 0; c < s.cols; ++c) {
      f.x[i * f.ldx + c] = static_cast<uint8_t>(extreme_x ? 255 : xd(rng));
      f.x16[i * f.ldx + c] = static_cast<int16_t>(sd(rng));
    }
  }
  f.add.resize(f.ldy * s.n);
  for (size_t i = 0; i < f.add.size(); ++i) f.add[i] = 0.001f * static_cast<float>(i % 97);
  f.y.assign(f.ldy * s.n, 0.0f);
  return f;
}

void Finish(benchmark::State& state, const Shape& s) {
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(s.rows) * s.cols * s.n);
}

void RunGemmU8(benchmark::State& state, const Kernels* k, Shape s, int wmax) {
  Fixture f = MakeFixture(s, wmax);
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x.data());
    k->gemm_u8s8f32(f.w, s.n, f.x.data(), f.ldx, f.add.data(), f.ldy, f.y.data(), f.ldy);
    benchmark::DoNotOptimize(f.y.data());
    benchmark::ClobberMemory();
  }
  Finish(state, s);
}

void RunGemmS16(benchmark::State& state, const Kernels* k, Shape s) {
  Fixture f = MakeFixture(s, 127);
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x16.data());
    k->gemm_s16s8f32(f.w, s.n, f.x16.data(), f.ldx, f.add.data(), f.ldy, f.y.data(), f.ldy);
    benchmark::DoNotOptimize(f.y.data());
    benchmark::ClobberMemory();
  }
  Finish(state, s);
}

void RunLstmCell(benchmark::State& state, const Kernels* k) {
  const int hidden = static_cast<int>(state.range(0));
  std::vector<float> g(4 * static_cast<size_t>(hidden)), h(hidden), c(hidden);
  for (size_t i = 0; i < g.size(); ++i) g[i] = -4.0f + 8.0f * static_cast<float>(i) / g.size();
  for (auto _ : state) {
    k->lstm_cell(hidden, g.data(), h.data(), c.data(), 0.0f);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * hidden);
}

// oneDNN's int8 matmul on one fixed shape: acc = x W^T in s32 (u8 x s8), then qsig's epilogue
// y = float(acc) * scale + add, so the output formula is the kernels' own.
class OnednnGemm {
 public:
  explicit OnednnGemm(const Fixture& f, const Shape& s)
      : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), n_(s.n), rows_(s.rows) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::dim M = s.n, K = s.cols, N = s.rows;
    const dnnl::memory::desc src_md({M, K}, dt::u8,
                                    dnnl::memory::dims{static_cast<long>(f.ldx), 1});
    const dnnl::memory::desc wei_md({K, N}, dt::s8, tag::any);
    const dnnl::memory::desc dst_md({M, N}, dt::s32, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), engine_);
    impl_ = pd.impl_info_str();
    prim_ = dnnl::matmul(pd);
    // W is rows x cols row-major: the K x N matrix in "ba" order; reordered once.
    dnnl::memory user_w({{K, N}, dt::s8, tag::ba}, engine_, const_cast<int8_t*>(f.rowmajor.data()));
    weights_ = dnnl::memory(pd.weights_desc(), engine_);
    dnnl::reorder(user_w, weights_).execute(stream_, user_w, weights_);
    stream_.wait();
    acc_.resize(static_cast<size_t>(s.n) * s.rows);
    src_ = dnnl::memory(src_md, engine_, DNNL_MEMORY_NONE);
    dst_ = dnnl::memory(dst_md, engine_, acc_.data());
  }

  void Run(const Fixture& f, float* y) {
    src_.set_data_handle(const_cast<uint8_t*>(f.x.data()));
    prim_.execute(stream_,
                  {{DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, weights_}, {DNNL_ARG_DST, dst_}});
    stream_.wait();
    for (int i = 0; i < n_; ++i) {
      const int32_t* a = acc_.data() + static_cast<size_t>(i) * rows_;
      const float* ad = f.add.data() + i * f.ldy;
      float* yi = y + i * f.ldy;
      for (int r = 0; r < rows_; ++r) {
        yi[r] = static_cast<float>(a[r]) * Bf16ToFloat(f.w.scales[static_cast<size_t>(r)]) + ad[r];
      }
    }
  }
  const std::string& impl() const { return impl_; }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  dnnl::matmul prim_;
  dnnl::memory weights_, src_, dst_;
  std::vector<int32_t> acc_;
  std::string impl_;
  int n_, rows_;
};

// Does oneDNN equal the reference bit for bit on this shape (real rows only)?
bool OnednnBitExact(const Shape& s, int wmax, bool extreme_x) {
  Fixture f = MakeFixture(s, wmax, extreme_x);
  OnednnGemm g(f, s);
  std::vector<float> want(f.y.size()), got(f.y.size());
  RefKernels().gemm_u8s8f32(f.w, s.n, f.x.data(), f.ldx, f.add.data(), f.ldy, want.data(), f.ldy);
  g.Run(f, got.data());
  for (int i = 0; i < s.n; ++i) {
    for (int r = 0; r < s.rows; ++r) {
      if (want[i * f.ldy + r] != got[i * f.ldy + r]) return false;
    }
  }
  return true;
}

void RunOnednn(benchmark::State& state, Shape s) {
  try {
    Fixture f = MakeFixture(s, 127);
    OnednnGemm g(f, s);
    const bool exact8 = OnednnBitExact(s, 127, true) && OnednnBitExact(s, 127, false);
    const bool exact7 = OnednnBitExact(s, 63, true);
    state.SetLabel(Cat({g.impl(), exact8 ? " bit_exact_8bit=yes" : " bit_exact_8bit=no",
                        exact7 ? " bit_exact_7bit=yes" : " bit_exact_7bit=no"}));
    for (auto _ : state) {
      benchmark::DoNotOptimize(f.x.data());
      g.Run(f, f.y.data());
      benchmark::DoNotOptimize(f.y.data());
      benchmark::ClobberMemory();
    }
    Finish(state, s);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void RunCalibrate(benchmark::State& state, CalibrationMethod method) {
  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  std::vector<float> v(1 << 16);
  for (float& x : v) x = normal(rng);
  CalibrationOptions o;
  o.method = method;
  for (auto _ : state) {
    TensorCalibrator c(o);
    for (int i = 0; i < 16; ++i) c.Observe(v);  // 1M values
    auto r = c.Range();
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * 16 * static_cast<int64_t>(v.size()));
}

void RegisterAll() {
  for (int i = kNumIsas - 1; i >= 0; --i) {
    const Isa isa = static_cast<Isa>(i);
    const Kernels* k = KernelsFor(isa);
    if (k == nullptr) continue;
    const std::string tag = IsaTag(isa);
    for (const Shape& s : kShapes) {
      benchmark::RegisterBenchmark(Cat({"BM_GemmU8S8F32_", tag, "/", ShapeName(s)}).c_str(),
                                   RunGemmU8, k, s, 127);
    }
    if (isa == Isa::kAvx2) {
      for (const Shape& s : kShapes) {
        benchmark::RegisterBenchmark(Cat({"BM_GemmU8S8F32_Avx2_7bit/", ShapeName(s)}).c_str(),
                                     RunGemmU8, k, s, 63);
      }
    }
    for (const Shape& s : kShapes) {
      benchmark::RegisterBenchmark(Cat({"BM_GemmS16S8F32_", tag, "/", ShapeName(s)}).c_str(),
                                   RunGemmS16, k, s);
    }
    benchmark::RegisterBenchmark(Cat({"BM_LstmCell_", tag}).c_str(), RunLstmCell, k)
        ->Arg(64)
        ->Arg(256);
  }
  for (const Shape& s : kShapes) {
    benchmark::RegisterBenchmark(Cat({"BM_GemmU8S8F32_Onednn/", ShapeName(s)}).c_str(), RunOnednn,
                                 s);
  }
  for (CalibrationMethod m : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile,
                              CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    benchmark::RegisterBenchmark(Cat({"BM_Calibrate_", CalibrationMethodName(m)}).c_str(),
                                 RunCalibrate, m)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace qsig::quant

int main(int argc, char** argv) {
  using namespace qsig::quant;
  benchmark::AddCustomContext("cpu_model", CpuBrand());
  benchmark::AddCustomContext("qsig_isa", ActiveIsaName());
  std::string supported;
  for (int i = 0; i < kNumIsas; ++i) {
    if (IsaSupported(static_cast<Isa>(i))) {
      supported = Cat({supported, supported.empty() ? "" : ",", IsaName(static_cast<Isa>(i))});
    }
  }
  benchmark::AddCustomContext("qsig_isas_supported", supported);
  RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
