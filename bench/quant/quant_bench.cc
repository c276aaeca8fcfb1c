// Packed int8 GEMV / small GEMM per ISA variant, on LSTM-like shapes, beside the scalar reference.
//
// Names: BM_GemvU8S8S32_<Isa>/<rows>x<cols>[/M<m>] (s32 outputs), BM_GemvU8S8F32_<Isa>/... (fused
// dequantization + bias), BM_GemvU8S8F32_Dnnl/... (the same fused GEMM as a oneDNN int8 matmul,
// dnnl_gemm.h: the peer, in the same run so the ratio holds), BM_GemvU8S8F32_Auto/... (whichever
// backend ChooseGemmBackend picked), BM_GemvU8S8S32_Avx2_7bit/... (reduce-range weights: the AVX2
// fast path), BM_Sigmoid_<Isa>/n, BM_Tanh_<Isa>/n, BM_Calibrate_<method>. Variants the CPU lacks
// are not registered. items/s counts multiply-accumulates (rows * cols * M), so it reads as MAC/s.
// BM_LstmA_DnnlInt8 / _DnnlF32 (dnnl_lstm_bench.cc): oneDNN's LSTM primitive on the LSTM-A window.
// Context: the CPU brand and the ISA the dispatcher chose (QSIG_MAX_ISA caps it). oneDNN is built
// with OpenMP here: set OMP_NUM_THREADS=1 for batch-1 latency (and QSIG_GEMM_BACKEND for _Auto).
//
//   ninja -C build qsig_bench_quant && OMP_NUM_THREADS=1 build/bench/quant/qsig_bench_quant
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "qsig/quant/calibration.h"
#include "qsig/quant/dnnl_gemm.h"
#include "qsig/quant/gemm.h"
#include "qsig/quant/isa.h"
#include "qsig/quant/packed.h"
#include "qsig/quant/vmath.h"

namespace qsig::quant {
namespace {

const char* IsaTag(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "Ref";
    case Isa::kAvx2:
      return "Avx2";
    case Isa::kAvxVnni:
      return "AvxVnni";
    case Isa::kAvx512Vnni:
      return "Avx512Vnni";
  }
  return "?";
}

struct Shape {
  int rows, cols, m;
};
// LSTM gate GEMVs: 4 * hidden rows. 256x32 = LSTM-A input projection (hidden 64, input 32),
// 256x64 = LSTM-A recurrent, 512x128 = LSTM-B recurrent, M=8 = 8 instruments micro-batched.
constexpr Shape kShapes[] = {{256, 32, 1}, {256, 64, 1}, {512, 128, 1}, {256, 64, 8}};

struct Fixture {
  PackedWeightsS8 w;
  std::vector<uint8_t> x;
  std::vector<int32_t> y;
  std::vector<float> yf, bias;
};

Fixture MakeFixture(const Shape& s, int max_abs) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<int> wd(-max_abs, max_abs), xd(0, 255);
  std::vector<int8_t> w(static_cast<size_t>(s.rows) * s.cols);
  for (int8_t& v : w) v = static_cast<int8_t>(wd(rng));
  std::vector<float> scales(static_cast<size_t>(s.rows), 0.01f);
  Fixture f{*PackWeightsS8(w.data(), s.rows, s.cols, s.cols, scales), {}, {}, {}, {}};
  f.x.resize(static_cast<size_t>(s.m) * s.cols);
  for (uint8_t& v : f.x) v = static_cast<uint8_t>(xd(rng));
  f.y.resize(static_cast<size_t>(s.m) * s.rows);
  f.yf.resize(f.y.size());
  f.bias.assign(static_cast<size_t>(s.rows), 0.5f);
  return f;
}

void RunS32(benchmark::State& state, GemmU8S8S32Fn fn, Shape s, int max_abs) {
  Fixture f = MakeFixture(s, max_abs);
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x.data());
    fn(s.m, f.x.data(), s.cols, f.w, f.y.data(), s.rows);
    benchmark::DoNotOptimize(f.y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * s.rows * s.cols * s.m);
}

void RunF32(benchmark::State& state, GemmU8S8F32Fn fn, Shape s) {
  Fixture f = MakeFixture(s, 127);
  const DequantEpilogue e{0.02f, 128, f.bias.data()};
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x.data());
    fn(s.m, f.x.data(), s.cols, f.w, e, f.yf.data(), s.rows);
    benchmark::DoNotOptimize(f.yf.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * s.rows * s.cols * s.m);
}

void RunF32Dnnl(benchmark::State& state, Shape s) {
  Fixture f = MakeFixture(s, 127);
  const DequantEpilogue e{0.02f, 128, f.bias.data()};
  auto d = DnnlGemmU8S8F32::Create(f.w, s.m, e, s.cols, s.rows);
  if (!d.ok()) {
    state.SkipWithError(std::string(d.status().message()).c_str());
    return;
  }
  state.SetLabel((*d)->impl_name());
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x.data());
    if (!(*d)->Run(f.x.data(), f.yf.data())) state.SkipWithError("oneDNN execute failed");
    benchmark::DoNotOptimize(f.yf.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * s.rows * s.cols * s.m);
}

void RunF32Auto(benchmark::State& state, Shape s) {
  Fixture f = MakeFixture(s, 127);
  const DequantEpilogue e{0.02f, 128, f.bias.data()};
  auto a = GemmU8S8F32Auto::Create(f.w, s.m, e, s.cols, s.rows);
  if (!a.ok()) {
    state.SkipWithError(std::string(a.status().message()).c_str());
    return;
  }
  const GemmBackendChoice& c = a->choice();
  state.SetLabel(std::string(GemmBackendName(c.backend)) + (c.forced ? " (forced)" : "") +
                 " qsig_ns=" + std::to_string(c.qsig_ns) +
                 " onednn_ns=" + std::to_string(c.onednn_ns));
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.x.data());
    if (!a->Run(f.x.data(), f.yf.data())) state.SkipWithError("oneDNN execute failed");
    benchmark::DoNotOptimize(f.yf.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * s.rows * s.cols * s.m);
}

void RunVMath(benchmark::State& state, VMathFn fn) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> x(n), y(n);
  for (size_t i = 0; i < n; ++i) x[i] = -6.0f + 12.0f * static_cast<float>(i) / n;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x.data());
    fn(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
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

std::string ShapeName(const Shape& s) {
  std::string n = std::to_string(s.rows) + "x" + std::to_string(s.cols);
  if (s.m > 1) n += "/M" + std::to_string(s.m);
  return n;
}

void RegisterAll() {
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!IsaSupported(isa)) continue;
    const GemmKernels& k = KernelsFor(isa);
    for (const Shape& s : kShapes) {
      benchmark::RegisterBenchmark(
          (std::string("BM_GemvU8S8S32_") + IsaTag(isa) + "/" + ShapeName(s)).c_str(), RunS32,
          k.u8s8s32, s, 127);
    }
    if (isa == Isa::kAvx2) {
      for (const Shape& s : kShapes) {
        benchmark::RegisterBenchmark(("BM_GemvU8S8S32_Avx2_7bit/" + ShapeName(s)).c_str(), RunS32,
                                     k.u8s8s32, s, 63);
      }
    }
    for (const Shape& s : kShapes) {
      benchmark::RegisterBenchmark(
          (std::string("BM_GemvU8S8F32_") + IsaTag(isa) + "/" + ShapeName(s)).c_str(), RunF32,
          k.u8s8f32, s);
    }
  }
  for (const Shape& s : kShapes) {
    benchmark::RegisterBenchmark(("BM_GemvU8S8F32_Dnnl/" + ShapeName(s)).c_str(), RunF32Dnnl, s);
  }
  for (const Shape& s : kShapes) {
    benchmark::RegisterBenchmark(("BM_GemvU8S8F32_Auto/" + ShapeName(s)).c_str(), RunF32Auto, s);
  }
  struct VM {
    const char* tag;
    Isa needs;
    VMathFn sigmoid, tanh;
  };
  for (const VM& v : {VM{"Ref", Isa::kScalar, SigmoidF32Ref, TanhF32Ref},
                      VM{"Avx2", Isa::kAvx2, SigmoidF32Avx2, TanhF32Avx2},
                      VM{"Avx512", Isa::kAvx512Vnni, SigmoidF32Avx512, TanhF32Avx512}}) {
    if (!IsaSupported(v.needs)) continue;
    benchmark::RegisterBenchmark((std::string("BM_Sigmoid_") + v.tag).c_str(), RunVMath, v.sigmoid)
        ->Arg(256);
    benchmark::RegisterBenchmark((std::string("BM_Tanh_") + v.tag).c_str(), RunVMath, v.tanh)
        ->Arg(256);
  }
  for (CalibrationMethod m : {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile,
                              CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    benchmark::RegisterBenchmark((std::string("BM_Calibrate_") + CalibrationMethodName(m)).c_str(),
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
      supported += (supported.empty() ? "" : ",") + std::string(IsaName(static_cast<Isa>(i)));
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
