// `qsig bench`: how fast one model runs in qsig, on one core, with the runtimes the server uses.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "command.h"
#include "qsig/commands/model_commands.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/feature_table.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/status_macros.h"
#include "table_flags.h"

namespace qsig::commands {
namespace {

using namespace models;      // NOLINT: the model types read plainly in command code.
using namespace models::io;  // NOLINT

constexpr size_t kMaxWindows = 2048;  // Calibration windows and distinct bench inputs.

// Multiply-accumulates of one inference in `mode` on the timed path.
int64_t Macs(const ModelSpec& s, const std::string& mode) {
  int64_t head = 0;
  for (const LinearLayer& l : s.layers) head += int64_t{l.in} * l.out;
  int64_t step = 0;
  for (const LstmLayer& l : s.lstm)
    step += int64_t{4} * l.hidden_size * (l.input_size + l.hidden_size);
  for (const GruLayer& l : s.gru)
    step += int64_t{3} * l.hidden_size * (l.input_size + l.hidden_size);
  if (step == 0) return head;  // An MLP runs on the last tick whatever the mode.
  if (mode == "full") return int64_t{s.window} * step + head;
  // window: the prefix (window - 1 steps) is precomputed between ticks, off the timed path, so
  // a tick runs one step per layer plus the head, as a streaming step does.
  return step + head;
}

struct Inputs {
  std::vector<float> windows;  // n x window x input_size.
  size_t n = 0;
  std::string note;
};

absl::StatusOr<Inputs> CalibrationInputs(const BenchOptions& o, const ModelSpec& spec) {
  Inputs in;
  const size_t per = static_cast<size_t>(spec.window) * spec.input_size;
  if (!o.calib_path.empty()) {
    TableOptions to = o.table;
    to.features = spec.feature_names;
    QSIG_ASSIGN_OR_RETURN(FeatureTable t, ReadFeatureTable(o.calib_path, to));
    std::string note;
    auto cols = MapColumns(spec, t, &note);
    if (!cols.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(o.calib_path, ": ", cols.status().message()));
    }
    const std::vector<size_t> rows =
        Spread(FullWindowRows(t, spec.window, 0, t.rows()), kMaxWindows);
    if (rows.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(o.calib_path, ": no complete window of ", spec.window, " rows"));
    }
    in.windows = Windows(t, *cols, spec.window, rows);
    in.n = rows.size();
    in.note = absl::StrCat("calibration and inputs: ", in.n, " windows of ", o.calib_path, " (",
                           t.format, "; ", note, ")");
    return in;
  }
  // Synthetic: each feature ~ N(mean, std) of the model's normalization.
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  in.n = 512;
  in.windows.resize(in.n * per);
  for (size_t i = 0; i < in.windows.size(); ++i) {
    const size_t f = i % static_cast<size_t>(spec.input_size);
    const float mean = f < spec.feature_mean.size() ? spec.feature_mean[f] : 0.0f;
    const float sd = f < spec.feature_std.size() ? spec.feature_std[f] : 1.0f;
    in.windows[i] = mean + sd * normal(rng);
  }
  in.note = absl::StrCat("no --calib: synthetic calibration and inputs, ", in.n,
                         " windows drawn from the model's normalization (N(mean, std) per "
                         "feature)");
  return in;
}

double Percentile(const std::vector<double>& sorted, double q) {
  const size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size() - 1, k > 0 ? k - 1 : 0)];
}

BenchResult Measure(const Model& model, const std::string& precision, const std::string& mode,
                    const Inputs& in, int iterations) {
  using Clock = std::chrono::steady_clock;
  const size_t nf = static_cast<size_t>(model.input_size());
  const size_t per = static_cast<size_t>(model.window()) * nf;
  const size_t ticks = in.n * static_cast<size_t>(model.window());  // The windows, end to end.
  std::vector<float> ws(std::max(model.workspace_floats(), size_t{1}));
  const Mode m = mode == "step" ? Mode::kStreaming : Mode::kWindow;
  std::vector<float> state(std::max(model.state_floats(m), size_t{1}) + 16);
  float* st = state.data();
  std::vector<double> ns;
  ns.reserve(static_cast<size_t>(iterations));
  volatile float sink = 0;
  size_t t = 0;
  auto tick = [&]() { return std::span<const float>(in.windows.data() + (t++ % ticks) * nf, nf); };
  if (mode != "full") {
    model.ResetState(m, st);
    for (int k = 0; k + 1 < model.window(); ++k) {
      sink = m == Mode::kWindow ? model.PushTick(tick(), st, ws.data())
                                : model.Step(tick(), st, ws.data());
    }
  }
  const int warmup = std::min(iterations, 200);
  for (int i = -warmup; i < iterations; ++i) {
    float y = 0;
    Clock::time_point t0, t1;
    if (mode == "full") {
      const std::span<const float> x(
          in.windows.data() + (static_cast<size_t>(i + warmup) % in.n) * per, per);
      t0 = Clock::now();
      y = model.Run(x, ws.data());
      t1 = Clock::now();
    } else if (mode == "window") {
      // As the server does after publishing: the next window's prefix, in idle time (untimed).
      while (model.PrecomputeWindow(st, ws.data())) {
      }
      const std::span<const float> x = tick();
      t0 = Clock::now();
      y = model.PushTick(x, st, ws.data());
      t1 = Clock::now();
    } else {
      const std::span<const float> x = tick();
      t0 = Clock::now();
      y = model.Step(x, st, ws.data());
      t1 = Clock::now();
    }
    sink = y;
    if (i >= 0) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  (void)sink;
  std::sort(ns.begin(), ns.end());
  BenchResult r;
  r.mode = mode;
  r.precision = precision;
  r.iterations = iterations;
  r.p50_us = Percentile(ns, 0.5) / 1e3;
  r.p99_us = Percentile(ns, 0.99) / 1e3;
  r.p999_us = Percentile(ns, 0.999) / 1e3;
  r.macs = Macs(model.spec(), mode);
  // At the median latency: the rate a typical inference achieves (a mean would be dominated by
  // the machine's stalls).
  r.gmacs_per_s = r.p50_us > 0 ? static_cast<double>(r.macs) / (r.p50_us * 1e3) : 0;
  return r;
}

}  // namespace

absl::StatusOr<BenchReport> RunBench(const BenchOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  std::vector<std::string> modes, precisions;
  if (o.mode == "all") {
    modes = {"full", "window", "step"};
  } else if (o.mode == "full" || o.mode == "window" || o.mode == "step") {
    modes = {o.mode};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--mode is '", o.mode, "'; expected full, window, step or all"));
  }
  if (o.precision == "both") {
    precisions = {"int8", "fp32"};
  } else if (o.precision == "int8" || o.precision == "fp32") {
    precisions = {o.precision};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--precision is '", o.precision, "'; expected int8, fp32 or both"));
  }
  if (o.iterations < 1 || o.iterations > 100000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--iterations is ", o.iterations, "; expected 1..100000000"));
  }
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  QSIG_ASSIGN_OR_RETURN(Inputs in, CalibrationInputs(o, *lm.spec));
  BenchReport rep;
  rep.model = o.model_path;
  rep.arch = ArchName(lm.spec->arch);
  rep.isa = KernelIsa();
  rep.notes.push_back(in.note);
  const std::string source = WindowSource(o.model_path, lm.format, o.import, *lm.spec);
  rep.notes.push_back(source.rfind("none", 0) == 0
                          ? std::string("window: none (MLP)")
                          : absl::StrCat("window: ", lm.spec->window, " (", source, ")"));
  std::unique_ptr<Model> fp32 = MakeFp32Model(lm.spec);
  std::unique_ptr<Model> int8;
  if (std::find(precisions.begin(), precisions.end(), "int8") != precisions.end()) {
    if (lm.artifact.has_value()) {
      QSIG_ASSIGN_OR_RETURN(int8, BuildInt8Model(*lm.artifact));
      rep.notes.push_back("int8: the artifact's calibration (the inputs above are only run)");
    } else {
      QSIG_ASSIGN_OR_RETURN(int8, CalibrateInt8Model(lm.spec, in.windows, Int8Options{}));
    }
  }
  for (const std::string& mode : modes) {
    for (const std::string& p : precisions) {
      const Model& model = p == "int8" ? *int8 : *fp32;
      rep.results.push_back(Measure(model, p, mode, in, o.iterations));
    }
  }
  nlohmann::json j = {{"model", rep.model}, {"arch", rep.arch}, {"isa", rep.isa}};
  j["results"] = nlohmann::json::array();
  for (const BenchResult& r : rep.results) {
    j["results"].push_back({{"mode", r.mode},
                            {"precision", r.precision},
                            {"p50_us", r.p50_us},
                            {"p99_us", r.p99_us},
                            {"p999_us", r.p999_us},
                            {"iterations", r.iterations},
                            {"macs", r.macs},
                            {"gmacs_per_s", r.gmacs_per_s}});
  }
  rep.json = j.dump();
  if (o.json) {
    log << rep.json << "\n";
    return rep;
  }
  log << absl::StrFormat("bench: %s (%s, %s, window %d, %d features), one core, ISA %s\n",
                         lm.spec->name, lm.format, rep.arch, lm.spec->window, lm.spec->input_size,
                         rep.isa);
  for (const std::string& n : rep.notes) log << "  " << n << "\n";
  log << "  full: Run() on the whole window; window: PushTick with the prefix precomputed "
         "between ticks (untimed), as the server runs it; step: one streaming Step()\n";
  log << absl::StrFormat("  %-7s %-6s %10s %10s %10s %12s %9s %11s\n", "mode", "prec", "p50 us",
                         "p99 us", "p99.9 us", "MACs", "GMAC/s", "iterations");
  for (const BenchResult& r : rep.results) {
    log << absl::StrFormat("  %-7s %-6s %10.3f %10.3f %10.3f %12d %9.2f %11d\n", r.mode,
                           r.precision, r.p50_us, r.p99_us, r.p999_us, r.macs, r.gmacs_per_s,
                           r.iterations);
  }
  return rep;
}

Command AddBenchCommand(CLI::App& app) {
  auto bo = std::make_shared<BenchOptions>();
  CLI::App* sub =
      app.add_subcommand("bench", "How fast one model runs in qsig on one core (p50/p99/p99.9)");
  sub->add_option("--model", bo->model_path, "Model file (.json, .onnx, .pt, .qsig)")->required();
  sub->add_option(
      "--calib", bo->calib_path,
      std::string(kFeatureTableHelp) + " (default: synthetic, from the model's normalization)");
  AddTableFlags(sub, bo->table);
  sub->add_option("--mode", bo->mode, "full, window, step or all")
      ->check(CLI::IsMember({"full", "window", "step", "all"}))
      ->capture_default_str();
  sub->add_option("--precision", bo->precision, "int8, fp32 or both")
      ->check(CLI::IsMember({"int8", "fp32", "both"}))
      ->capture_default_str();
  sub->add_option("--iterations", bo->iterations, "Timed inferences per mode and precision")
      ->capture_default_str();
  sub->add_flag("--json", bo->json, "Print one JSON object");
  sub->add_option("--window", bo->import.window,
                  "Timesteps of an imported recurrent model whose file does not fix it");
  AddFeatureNamesFlag(sub, bo->import);
  return {sub, [bo] {
            if (bo->json) {
              // Notes go to stderr so that stdout is the JSON object alone.
              auto r = RunBench(*bo);
              if (!r.ok()) return Fail("qsig", "bench", r.status());
              for (const std::string& n : r->notes) std::cerr << "qsig bench: " << n << "\n";
              return 0;
            }
            auto r = RunBench(*bo);
            return r.ok() ? 0 : Fail("qsig", "bench", r.status());
          }};
}

}  // namespace qsig::commands
