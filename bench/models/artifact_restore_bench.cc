// Loading a .qsig artifact of a 2 x 100 LSTM (input 32, window 32, 4096 stored calibration
// windows) into a verified INT8 runtime, the two ways a server can:
//   BM_ArtifactLoad_Recalibrate  ReadArtifact + models::io::BuildInt8Model: calibrates again over
//                                every stored window, then checks the reference outputs (what a
//                                reload of a file does).
//   BM_ArtifactLoad_FromRecipe   ReadArtifact + models::BuildInt8FromDescription (the recorded
//                                quantization, no calibration) + models::io::VerifyInt8Model on
//                                the same reference outputs (what a restart from state.dir does).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "qsig/models/io/artifact.h"
#include "qsig/models/model.h"
#include "reference_models.h"

namespace {

using namespace qsig::models;

constexpr int kInput = 32, kHidden = 100, kWindow = 32;

std::shared_ptr<ModelSpec> Lstm2x100() {
  auto spec = std::make_shared<ModelSpec>();
  spec->name = "lstm_2x100";
  spec->arch = Arch::kLstm;
  spec->input_size = kInput;
  spec->window = kWindow;
  for (int i = 0; i < kInput; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%d", i);
    spec->feature_names.emplace_back(name);
  }
  std::mt19937 rng(3);
  for (int l = 0; l < 2; ++l) {
    LstmLayer layer;
    layer.input_size = l == 0 ? kInput : kHidden;
    layer.hidden_size = kHidden;
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    layer.w_ih.resize(4 * kHidden * layer.input_size);
    layer.w_hh.resize(4 * kHidden * kHidden);
    layer.b_ih.resize(4 * kHidden);
    layer.b_hh.resize(4 * kHidden);
    for (auto* v : {&layer.w_ih, &layer.w_hh, &layer.b_ih, &layer.b_hh}) {
      for (float& x : *v) x = u(rng);
    }
    spec->lstm.push_back(std::move(layer));
  }
  LinearLayer head;
  head.in = kHidden;
  head.out = 1;
  head.weight.resize(kHidden);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (float& x : head.weight) x = u(rng);
  head.bias = {0.0f};
  spec->layers.push_back(std::move(head));
  // Normalization from the session, as training would set it.
  const std::vector<float> ticks = reference::Features(11, 20000, kInput);
  spec->feature_mean.assign(kInput, 0.0f);
  spec->feature_std.assign(kInput, 0.0f);
  const size_t n = ticks.size() / kInput;
  for (size_t t = 0; t < n; ++t) {
    for (int k = 0; k < kInput; ++k) spec->feature_mean[k] += ticks[t * kInput + k] / n;
  }
  for (size_t t = 0; t < n; ++t) {
    for (int k = 0; k < kInput; ++k) {
      const float d = ticks[t * kInput + k] - spec->feature_mean[k];
      spec->feature_std[k] += d * d / n;
    }
  }
  for (float& s : spec->feature_std) s = std::sqrt(s) + 1e-6f;
  return spec;
}

struct Fixture {
  std::string path;
  Int8Description description;
  std::string precision;
  Fixture() {
    auto spec = Lstm2x100();
    const std::vector<float> windows =
        reference::Windows(reference::Features(7, 4096 + kWindow, kInput), kWindow, kInput);
    std::unique_ptr<Model> built;
    auto a =
        io::MakeArtifact(spec, windows, Int8Options{}, io::ArtifactSource{}, &built, &description);
    if (!a.ok()) std::abort();
    precision = built->precision();
    char p[64];
    std::snprintf(p, sizeof p, "/tmp/qsig_bench_artifact_%d.qsig", static_cast<int>(::getpid()));
    path = p;
    if (!io::WriteArtifact(*a, path).ok()) std::abort();
  }
  ~Fixture() { ::unlink(path.c_str()); }
};

Fixture& Get() {
  static Fixture f;
  return f;
}

void BM_ArtifactLoad_Recalibrate(benchmark::State& s) {
  Fixture& f = Get();
  for (auto _ : s) {
    auto a = io::ReadArtifact(f.path);
    auto m = io::BuildInt8Model(*a);
    if (!m.ok()) s.SkipWithError("BuildInt8Model failed");
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_ArtifactLoad_Recalibrate)->Unit(benchmark::kMillisecond)->Iterations(1);

void BM_ArtifactLoad_FromRecipe(benchmark::State& s) {
  Fixture& f = Get();
  for (auto _ : s) {
    auto a = io::ReadArtifact(f.path);
    auto spec = std::make_shared<const ModelSpec>(a->spec);
    auto m = BuildInt8FromDescription(spec, f.description, a->calibration.options, f.precision);
    if (!m.ok() || !io::VerifyInt8Model(*a, **m).ok()) s.SkipWithError("restore failed");
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_ArtifactLoad_FromRecipe)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
BENCHMARK_MAIN();
