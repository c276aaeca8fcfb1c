// qsig_bench_models: latency of the FP32 and INT8 runtimes on the issue-3 reference models,
// against LibTorch FP32 with the same weights, in the same binary and run.
//
// What each benchmark measures (batch 1, one thread, one call per iteration):
//   BM_<M>_Int8Window / _Fp32Window  the per-tick cost of window mode: Model::PushTick of the
//       next tick of a realistic feature stream into an instrument's state, which returns the
//       model's output over the last window() ticks (exactly what Run() on that window returns).
//       With cached first-layer projections this is one input projection plus the recurrence
//       over the window (h0 = c0 = 0 at the window's start, as trained).
//   BM_<M>_LibTorchFp32  torch::nn::LSTM (+ Linear head) / Sequential Linear+ReLU forward on the
//       normalized window (batch 1, NoGradGuard, 1 intra-op thread, OpenBLAS 1 thread);
//       normalization is included.
//   BM_LstmA_Int8Step / _Fp32Step  one streaming step (Model::Step): one LSTM step for one tick
//       with h, c kept in the instrument's state, plus the head.
//   BM_MlpC_Int8 / _Fp32  Run() on one tick.
//   BM_LstmA_Int8WindowReduceRange / BM_MlpC_Int8ReduceRange  the same INT8 plans with 7-bit
//       weights (Int8Options::reduce_range): on AVX2 (QSIG_MAX_ISA=avx2) the u8 x s8 kernels skip
//       the activation split; elsewhere they run as the 8-bit ones.
//   BM_LstmA_Int8WindowPrecomputed  window mode's critical path with a precomputed sliding
//       window (Model::PrecomputeWindow, run untimed before each tick as the server does in idle
//       time): PushTick's input projection, one step per LSTM layer from the ready prefix, and
//       the head. Same output as BM_LstmA_Int8Window, bit for bit.
//   BM_LstmA_Int8RunFullWindow  stateless Run() over a whole window (every projection redone).
//   BM_LstmA_Int8StepBatch/N  Model::StepBatch of N instruments (GEMM), time per call.
// Every benchmark reports p50_us / p99_us over its iterations (each timed with steady_clock,
// ~20 ns of clock overhead included) besides Google Benchmark's mean.
//
// LibTorch and BLAS: Debian's torch calls whatever libblas.so.3 the dynamic loader finds. To
// measure it with the fastest BLAS a user would give it here (OpenBLAS, one thread), main()
// re-executes the binary with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread
// prepended and OPENBLAS_NUM_THREADS=1 unless both are already set (the loader reads
// LD_LIBRARY_PATH only at start-up, hence the re-exec). QSIG_BENCH_NO_REEXEC=1 disables it.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "qsig/models/model.h"
#include "reference_models.h"
#include "torch_peer.h"

namespace qsig::models::bench {
namespace {

using reference::Ref;

constexpr int kStreamTicks = 4096;  // cycled through by the per-tick benchmarks
constexpr int kCalibTicks = 3000;

struct RefModel {
  std::shared_ptr<const ModelSpec> spec;
  std::shared_ptr<const Model> fp32, int8, int8_rr;  // int8_rr: Int8Options::reduce_range
  std::vector<float> stream;  // kStreamTicks x input_size raw ticks (evaluation session)
};

RefModel& Get(Ref r) {
  static RefModel models[4];
  RefModel& m = models[static_cast<int>(r)];
  if (m.spec) return m;
  m.spec = std::make_shared<const ModelSpec>(reference::TrainedSpec(r));
  m.fp32 = MakeFp32Model(m.spec);
  const int in = m.spec->input_size;
  const std::vector<float> calib_ticks = reference::Features(11, kCalibTicks, in);
  const std::vector<float> calib =
      reference::Windows(calib_ticks, m.spec->window, in, m.spec->window > 1 ? 3 : 1);
  Int8Options o;   // the default plan (s16 model input, FP32 head) ...
  o.max_rmse = 0;  // ... without the accuracy guard, so every INT8 benchmark is all-INT8
  auto q = CalibrateInt8Model(m.spec, calib, o);
  if (q.ok()) m.int8 = std::shared_ptr<const Model>(std::move(*q));
  o.reduce_range = true;
  auto q7 = CalibrateInt8Model(m.spec, calib, o);
  if (q7.ok()) m.int8_rr = std::shared_ptr<const Model>(std::move(*q7));
  m.stream = reference::Features(22, kStreamTicks, in);
  return m;
}

enum class Prec { kFp32, kInt8, kInt8ReduceRange };

const std::shared_ptr<const Model>& ModelOf(const RefModel& m, Prec p) {
  return p == Prec::kFp32 ? m.fp32 : (p == Prec::kInt8 ? m.int8 : m.int8_rr);
}

// Times every iteration of `body` and reports p50_us / p99_us.
template <class F>
void TimedLoop(benchmark::State& state, F&& body) {
  using Clock = std::chrono::steady_clock;
  std::vector<float> ns;
  ns.reserve(1 << 20);
  for (auto _ : state) {
    const auto t0 = Clock::now();
    body();
    const auto t1 = Clock::now();
    if (ns.size() < ns.capacity()) {
      ns.push_back(static_cast<float>(std::chrono::duration<double, std::nano>(t1 - t0).count()));
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  if (ns.empty()) return;
  auto pct = [&ns](double p) {
    const size_t k =
        std::min(ns.size() - 1, static_cast<size_t>(p * static_cast<double>(ns.size())));
    std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
    return ns[k] * 1e-3;
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
}

void WindowBench(benchmark::State& state, Ref r, Prec p) {
  RefModel& m = Get(r);
  const std::shared_ptr<const Model>& model = ModelOf(m, p);
  if (!model) {
    state.SkipWithError("model unavailable (calibration failed)");
    return;
  }
  Session session(model, Mode::kWindow);
  const size_t in = static_cast<size_t>(model->input_size());
  size_t t = 0;
  // Fill the window first so every timed call returns a real output.
  for (int k = 0; k < model->window(); ++k, ++t) session.Push({m.stream.data() + t * in, in});
  TimedLoop(state, [&] {
    const float* tick = m.stream.data() + (t % kStreamTicks) * in;
    benchmark::DoNotOptimize(tick);
    float y = session.Push({tick, in});
    benchmark::DoNotOptimize(y);
    ++t;
  });
}

// WindowBench with the next window's prefix precomputed (untimed) before each timed tick.
void WindowPrecomputedBench(benchmark::State& state, Ref r, Prec p) {
  RefModel& m = Get(r);
  const std::shared_ptr<const Model>& model = ModelOf(m, p);
  if (!model) {
    state.SkipWithError("model unavailable (calibration failed)");
    return;
  }
  Session session(model, Mode::kWindow);
  std::vector<float> ws(model->workspace_floats());
  const size_t in = static_cast<size_t>(model->input_size());
  size_t t = 0;
  for (int k = 0; k < model->window(); ++k, ++t) session.Push({m.stream.data() + t * in, in});
  using Clock = std::chrono::steady_clock;
  std::vector<float> ns;
  ns.reserve(1 << 20);
  int64_t misses = 0;
  for (auto _ : state) {
    state.PauseTiming();
    while (model->PrecomputeWindow(session.state(), ws.data())) {
    }
    if (!model->WindowPrecomputed(session.state())) ++misses;
    const float* tick = m.stream.data() + (t % kStreamTicks) * in;
    benchmark::DoNotOptimize(tick);
    state.ResumeTiming();
    const auto t0 = Clock::now();
    float y = session.Push({tick, in});
    const auto t1 = Clock::now();
    benchmark::DoNotOptimize(y);
    ++t;
    if (ns.size() < ns.capacity()) {
      ns.push_back(static_cast<float>(std::chrono::duration<double, std::nano>(t1 - t0).count()));
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  if (misses > 0) state.SkipWithError("prefix not ready");
  if (ns.empty()) return;
  auto pct = [&ns](double q) {
    const size_t k =
        std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    std::nth_element(ns.begin(), ns.begin() + static_cast<std::ptrdiff_t>(k), ns.end());
    return ns[k] * 1e-3;
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
}

void StepBench(benchmark::State& state, Ref r, Prec p) {
  RefModel& m = Get(r);
  const std::shared_ptr<const Model>& model = ModelOf(m, p);
  if (!model) {
    state.SkipWithError("model unavailable (calibration failed)");
    return;
  }
  Session session(model, Mode::kStreaming);
  const size_t in = static_cast<size_t>(model->input_size());
  if (std::isnan(session.Push({m.stream.data(), in}))) {
    state.SkipWithError("streaming mode not implemented by this runtime");
    return;
  }
  size_t t = 1;
  TimedLoop(state, [&] {
    const float* tick = m.stream.data() + (t % kStreamTicks) * in;
    benchmark::DoNotOptimize(tick);
    float y = session.Push({tick, in});
    benchmark::DoNotOptimize(y);
    ++t;
  });
}

void RunBench(benchmark::State& state, Ref r, Prec p) {
  RefModel& m = Get(r);
  const std::shared_ptr<const Model>& model = ModelOf(m, p);
  if (!model) {
    state.SkipWithError("model unavailable (calibration failed)");
    return;
  }
  const size_t in = static_cast<size_t>(model->input_size());
  const size_t per = static_cast<size_t>(model->window()) * in;
  const size_t n_windows = kStreamTicks - static_cast<size_t>(model->window());
  std::vector<float> ws(model->workspace_floats());
  size_t t = 0;
  TimedLoop(state, [&] {
    const float* w = m.stream.data() + (t % n_windows) * in;
    benchmark::DoNotOptimize(w);
    float y = model->Run({w, per}, ws.data());
    benchmark::DoNotOptimize(y);
    ++t;
  });
}

void TorchBench(benchmark::State& state, Ref r) {
  RefModel& m = Get(r);
  std::string why;
  std::unique_ptr<TorchPeer> peer = MakeTorchPeer(*m.spec, &why);
  if (!peer) {
    state.SkipWithError(why.c_str());
    return;
  }
  const size_t in = static_cast<size_t>(m.spec->input_size);
  const size_t n_windows = kStreamTicks - static_cast<size_t>(m.spec->window);
  size_t t = 0;
  TimedLoop(state, [&] {
    const float* w = m.stream.data() + (t % n_windows) * in;
    benchmark::DoNotOptimize(w);
    float y = peer->Run(w);
    benchmark::DoNotOptimize(y);
    ++t;
  });
}

void StepBatchBench(benchmark::State& state, Ref r) {
  RefModel& m = Get(r);
  if (!m.int8) {
    state.SkipWithError("model unavailable (calibration failed)");
    return;
  }
  const Model& model = *m.int8;
  const int n = static_cast<int>(state.range(0));
  const size_t in = static_cast<size_t>(model.input_size());
  std::vector<std::vector<float>> states(static_cast<size_t>(n),
                                         std::vector<float>(model.state_floats(Mode::kStreaming)));
  std::vector<float*> ptrs;
  for (auto& s : states) {
    model.ResetState(Mode::kStreaming, s.data());
    ptrs.push_back(s.data());
  }
  std::vector<float> ws(model.batch_workspace_floats(n)), out(static_cast<size_t>(n));
  size_t t = 0;
  TimedLoop(state, [&] {
    const float* ticks = m.stream.data() + (t % (kStreamTicks - 64)) * in;
    benchmark::DoNotOptimize(ticks);
    model.StepBatch(n, ticks, ptrs.data(), ws.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    ++t;
  });
}

void BM_LstmA_Int8Window(benchmark::State& s) { WindowBench(s, Ref::kLstmA, Prec::kInt8); }
void BM_LstmA_Int8WindowPrecomputed(benchmark::State& s) {
  WindowPrecomputedBench(s, Ref::kLstmA, Prec::kInt8);
}
void BM_LstmA_Fp32Window(benchmark::State& s) { WindowBench(s, Ref::kLstmA, Prec::kFp32); }
void BM_LstmA_LibTorchFp32(benchmark::State& s) { TorchBench(s, Ref::kLstmA); }
void BM_LstmA_Int8Step(benchmark::State& s) { StepBench(s, Ref::kLstmA, Prec::kInt8); }
void BM_LstmA_Fp32Step(benchmark::State& s) { StepBench(s, Ref::kLstmA, Prec::kFp32); }
void BM_LstmB_Int8Window(benchmark::State& s) { WindowBench(s, Ref::kLstmB, Prec::kInt8); }
void BM_LstmB_Fp32Window(benchmark::State& s) { WindowBench(s, Ref::kLstmB, Prec::kFp32); }
void BM_LstmB_LibTorchFp32(benchmark::State& s) { TorchBench(s, Ref::kLstmB); }
void BM_MlpC_Int8(benchmark::State& s) { RunBench(s, Ref::kMlpC, Prec::kInt8); }
void BM_LstmA_Int8WindowReduceRange(benchmark::State& s) {
  WindowBench(s, Ref::kLstmA, Prec::kInt8ReduceRange);
}
void BM_MlpC_Int8ReduceRange(benchmark::State& s) {
  RunBench(s, Ref::kMlpC, Prec::kInt8ReduceRange);
}
void BM_MlpC_Fp32(benchmark::State& s) { RunBench(s, Ref::kMlpC, Prec::kFp32); }
void BM_MlpC_LibTorchFp32(benchmark::State& s) { TorchBench(s, Ref::kMlpC); }
void BM_LstmA_Int8RunFullWindow(benchmark::State& s) { RunBench(s, Ref::kLstmA, Prec::kInt8); }
void BM_LstmA_Int8StepBatch(benchmark::State& s) { StepBatchBench(s, Ref::kLstmA); }

// The INT8 builds' per-shape backend choice (qsig or oneDNN; Model::kernel_report): printed to
// stderr once per model, the chooser's load-time cost and the shapes given to oneDNN in the
// label. Nothing is timed in the loop.
void KernelChoiceBench(benchmark::State& state, Ref r, Prec p) {
  const std::shared_ptr<const Model>& m = ModelOf(Get(r), p);
  const KernelReport* k = m ? m->kernel_report() : nullptr;
  if (k == nullptr) {
    state.SkipWithError("no INT8 model");
    return;
  }
  int on = 0;
  for (const KernelChoice& c : k->shapes) on += c.backend == "onednn";
  static bool printed[4][3] = {};
  bool& done = printed[static_cast<int>(r)][static_cast<int>(p)];
  if (!done) {
    std::fprintf(stderr, "%s %s:\n%s", reference::RefName(r),
                 p == Prec::kInt8 ? "int8" : "int8 reduce_range",
                 FormatKernelReport(*k, "  ").c_str());
    done = true;
  }
  for (auto _ : state) benchmark::DoNotOptimize(on);
  state.SetLabel(std::to_string(on) + "/" + std::to_string(k->shapes.size()) +
                 " shapes on oneDNN, chooser " + std::to_string(k->chooser_ms) + " ms");
}
void BM_KernelChoice_LstmA_Int8(benchmark::State& s) {
  KernelChoiceBench(s, Ref::kLstmA, Prec::kInt8);
}
void BM_KernelChoice_LstmA_Int8ReduceRange(benchmark::State& s) {
  KernelChoiceBench(s, Ref::kLstmA, Prec::kInt8ReduceRange);
}
void BM_KernelChoice_LstmB_Int8(benchmark::State& s) {
  KernelChoiceBench(s, Ref::kLstmB, Prec::kInt8);
}
void BM_KernelChoice_LstmB_Int8ReduceRange(benchmark::State& s) {
  KernelChoiceBench(s, Ref::kLstmB, Prec::kInt8ReduceRange);
}
void BM_KernelChoice_MlpC_Int8ReduceRange(benchmark::State& s) {
  KernelChoiceBench(s, Ref::kMlpC, Prec::kInt8ReduceRange);
}

BENCHMARK(BM_KernelChoice_LstmA_Int8)->Iterations(1);
BENCHMARK(BM_KernelChoice_LstmA_Int8ReduceRange)->Iterations(1);
BENCHMARK(BM_KernelChoice_LstmB_Int8)->Iterations(1);
BENCHMARK(BM_KernelChoice_LstmB_Int8ReduceRange)->Iterations(1);
BENCHMARK(BM_KernelChoice_MlpC_Int8ReduceRange)->Iterations(1);
BENCHMARK(BM_LstmA_Int8Window);
BENCHMARK(BM_LstmA_Int8WindowPrecomputed);
BENCHMARK(BM_LstmA_Fp32Window);
BENCHMARK(BM_LstmA_LibTorchFp32);
BENCHMARK(BM_LstmA_Int8Step);
BENCHMARK(BM_LstmA_Fp32Step);
BENCHMARK(BM_LstmB_Int8Window);
BENCHMARK(BM_LstmB_Fp32Window);
BENCHMARK(BM_LstmB_LibTorchFp32);
BENCHMARK(BM_MlpC_Int8);
BENCHMARK(BM_MlpC_Fp32);
BENCHMARK(BM_MlpC_LibTorchFp32);
BENCHMARK(BM_LstmA_Int8RunFullWindow);
BENCHMARK(BM_LstmA_Int8StepBatch)->Arg(4)->Arg(8);
BENCHMARK(BM_LstmA_Int8WindowReduceRange);
BENCHMARK(BM_MlpC_Int8ReduceRange);

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// Re-executes with OpenBLAS (1 thread) visible to LibTorch; see the file comment.
void MaybeReexecWithOpenBlas(char** argv) {
  constexpr const char* kOpenBlasDir = "/usr/lib/x86_64-linux-gnu/openblas-pthread";
  const char* no = std::getenv("QSIG_BENCH_NO_REEXEC");
  if (no != nullptr && std::strcmp(no, "1") == 0) return;
  const char* ld = std::getenv("LD_LIBRARY_PATH");
  const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
  const bool ld_ok = ld != nullptr && std::strstr(ld, kOpenBlasDir) != nullptr;
  const bool threads_ok = threads != nullptr && std::strcmp(threads, "1") == 0;
  if (ld_ok && threads_ok) return;
  if (std::getenv("QSIG_BENCH_REEXECED") != nullptr) return;  // never loop
  std::string path = kOpenBlasDir;
  if (ld != nullptr && *ld != '\0') path += std::string(":") + ld;
  setenv("LD_LIBRARY_PATH", path.c_str(), 1);
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  setenv("QSIG_BENCH_REEXECED", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

}  // namespace
}  // namespace qsig::models::bench

int main(int argc, char** argv) {
  using namespace qsig::models::bench;
  MaybeReexecWithOpenBlas(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const char* ld = std::getenv("LD_LIBRARY_PATH");
  const char* ob = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("cpu_model", CpuModel());
  benchmark::AddCustomContext("qsig_kernel_isa", qsig::models::KernelIsa());
  benchmark::AddCustomContext("libtorch", TorchDescription());
  benchmark::AddCustomContext("LD_LIBRARY_PATH", ld ? ld : "");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", ob ? ob : "");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
