// Unattended operation on the real `qsig serve` with its simulator: state.dir survives kill -9
// (the restarted server serves the same INT8 version at once, keeps its history, changes its
// epoch), Rollback swaps an earlier version in without a gap in the signal stream, and a forced
// divergence switches the model to FP32 (signals flagged) until a passing recalibration.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kFlagWarmup = 4, kFlagFallback = 256;

// One `qsig serve` (demo config, simulator) with the given extra --set values.
class Server {
 public:
  Server(const std::string& name, const std::vector<std::string>& sets) {
    // Recalibrations back to back are what these tests do (issue 11's gates off).
    std::vector<std::string> all = {"calibration.cooldown_s=0", "calibration.min_samples=100",
                                    "sim.rate=5000", "calibration.warmup_samples=300",
                                    "calibration.samples=2000"};
    all.insert(all.end(), sets.begin(), sets.end());
    const std::vector<std::string> args =
        ServeArgs(QSIG_BINARY, QSIG_SOURCE_DIR "/config/demo.yaml", all, &grpc_port_, &admin_port_,
                  &metrics_port_);
    child_ = std::make_unique<Child>(args, ::testing::TempDir() + "qsig_state_" + name + ".log");
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_port_),
                                   grpc::InsecureChannelCredentials());
    admin_channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(admin_port_),
                                         grpc::InsecureChannelCredentials());
    signals = v1::SignalService::NewStub(channel_);
    admin = v1::AdminService::NewStub(admin_channel_);
  }

  // Waits until the server answers.
  bool WaitServing(int seconds = 30) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    v1::ListModelsResponse resp;
    while (Clock::now() < deadline) {
      if (ListModels(&resp).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // Waits until ListModels answers and every model serves INT8 (or its fallback).
  bool WaitCalibrated(int seconds = 60) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
      v1::ListModelsResponse resp;
      if (ListModels(&resp).ok() && resp.models_size() > 0) {
        bool all = true;
        for (const auto& m : resp.models()) all = all && m.current_version() > 0;
        for (const auto& m : resp.models()) all = all && (m.precision() != "fp32" || m.fallback());
        if (all) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  grpc::Status ListModels(v1::ListModelsResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return admin->ListModels(&ctx, v1::ListModelsRequest(), resp);
  }
  grpc::Status Status(const std::string& model, v1::GetModelStatusResponse* resp) {
    grpc::ClientContext ctx;
    v1::GetModelStatusRequest req;
    req.set_model(model);
    return admin->GetModelStatus(&ctx, req, resp);
  }
  grpc::Status Recalibrate(const std::string& model, v1::RecalibrateResponse* resp) {
    grpc::ClientContext ctx;
    v1::RecalibrateRequest req;
    req.set_model(model);
    return admin->Recalibrate(&ctx, req, resp);
  }
  // The first `n` signals of `model` for AAPL on a fresh Subscribe stream.
  std::vector<v1::Signal> FirstSignals(const std::string& model, int n) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::SubscribeRequest req;
    req.add_models(model);
    req.add_instruments("AAPL");
    auto reader = signals->Subscribe(&ctx, req);
    std::vector<v1::Signal> out;
    v1::Signal s;
    while (static_cast<int>(out.size()) < n && reader->Read(&s)) out.push_back(s);
    ctx.TryCancel();
    return out;
  }
  std::map<std::string, double> Scrape() {
    return ParseMetrics(HttpGet(metrics_port_, "/metrics"));
  }
  void Kill9() {
    kill(child_->pid(), SIGKILL);
    child_->Wait(10000);
  }
  std::string Log() const { return child_->Log(); }
  int Terminate() { return child_->Terminate(); }

  std::unique_ptr<v1::SignalService::Stub> signals;
  std::unique_ptr<v1::AdminService::Stub> admin;

 private:
  int grpc_port_ = 0, admin_port_ = 0, metrics_port_ = 0;
  std::unique_ptr<Child> child_;
  std::shared_ptr<grpc::Channel> channel_, admin_channel_;
};

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "qsig_statedir_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

const v1::ModelSummary* Find(const v1::ListModelsResponse& r, const std::string& model) {
  for (const auto& m : r.models()) {
    if (m.model() == model) return &m;
  }
  return nullptr;
}

TEST(State, KillNineThenRestartServesTheSameInt8VersionWithItsHistory) {
  const std::string dir = FreshDir("restart");
  uint64_t version = 0, epoch = 0;
  v1::ListModelsResponse before;
  v1::GetModelStatusResponse status_before;
  {
    Server s("restart1", {"state.dir=" + dir, "drift.span_s=1", "drift.interval_s=0.25"});
    ASSERT_TRUE(s.WaitCalibrated()) << s.Log();
    v1::RecalibrateResponse rr;
    ASSERT_TRUE(s.Recalibrate("lstm", &rr).ok()) << s.Log();  // A second version.
    // Its distribution reference (drift.span_s after the install) completes and is stored.
    const auto until = Clock::now() + std::chrono::seconds(20);
    bool complete = false;
    while (!complete && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      v1::GetModelStatusResponse st;
      complete = s.Status("lstm", &st).ok();
      for (const auto& a : st.alarms()) {
        if (a.kind() == "wasserstein" || a.kind() == "output_wasserstein") {
          complete = complete && a.threshold() > 0;
        }
      }
    }
    ASSERT_TRUE(complete) << s.Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // The state write.
    const auto sig = s.FirstSignals("lstm", 5);
    ASSERT_EQ(sig.size(), 5u) << s.Log();
    version = sig.back().model_version();
    epoch = sig.back().epoch();
    EXPECT_NE(epoch, 0u);
    EXPECT_GE(version, 2u);
    ASSERT_TRUE(s.ListModels(&before).ok());
    ASSERT_NE(Find(before, "lstm"), nullptr);
    EXPECT_EQ(Find(before, "lstm")->current_version(), version);
    EXPECT_GE(Find(before, "lstm")->history_size(), 2);
    EXPECT_EQ(Find(before, "lstm")->history(0).reason(), "warmup");
    ASSERT_TRUE(s.Status("lstm", &status_before).ok());
    EXPECT_TRUE(Find(before, "lstm")->history(0).artifact_kept());
    EXPECT_GT(Find(before, "lstm")->history(0).samples(), 0u);
    EXPECT_GT(Find(before, "lstm")->history(0).samples_last_unix_ns(), 0);
    s.Kill9();  // Mid-stream: no orderly shutdown.
  }
  Server s("restart2", {"state.dir=" + dir, "calibration.warmup_samples=20000",
                        "calibration.samples=20000", "drift.span_s=1", "drift.interval_s=0.25"});
  // A warm-up calibration would take several seconds of feed (and number its version after
  // this one): the first signals' INT8 can only come from the state directory.
  ASSERT_TRUE(s.WaitServing()) << s.Log();
  const auto sig = s.FirstSignals("lstm", 3);
  ASSERT_EQ(sig.size(), 3u) << s.Log();
  for (const auto& x : sig) {
    EXPECT_EQ(x.precision(), "int8");
    EXPECT_EQ(x.flags() & kFlagWarmup, 0u);
    EXPECT_EQ(x.model_version(), version);
    EXPECT_NE(x.epoch(), epoch);
    EXPECT_NE(x.epoch(), 0u);
  }
  EXPECT_THAT(s.Log(), HasSubstr("restored version " + std::to_string(version)));
  v1::ListModelsResponse after;
  ASSERT_TRUE(s.ListModels(&after).ok());
  const auto* a = Find(after, "lstm");
  const auto* b = Find(before, "lstm");
  ASSERT_EQ(a->history_size(), b->history_size());
  for (int i = 0; i < a->history_size(); ++i) {
    EXPECT_EQ(a->history(i).SerializeAsString(), b->history(i).SerializeAsString()) << i;
  }
  // The drift baselines came back with it: the same calibrated thresholds for every kind.
  v1::GetModelStatusResponse status_after;
  ASSERT_TRUE(s.Status("lstm", &status_after).ok());
  ASSERT_EQ(status_after.alarms_size(), status_before.alarms_size());
  for (int i = 0; i < status_after.alarms_size(); ++i) {
    const auto& x = status_after.alarms(i);
    if (x.kind() == "fallback") continue;
    EXPECT_EQ(x.kind(), status_before.alarms(i).kind());
    EXPECT_EQ(x.threshold(), status_before.alarms(i).threshold()) << x.kind();
    if (x.kind() == "psi" || x.kind() == "wasserstein" || x.kind() == "output_psi" ||
        x.kind() == "output_wasserstein") {
      EXPECT_GT(x.threshold(), 0) << x.kind();
    }
  }
  // Numbering continues.
  // Not enough fresh samples may be in yet; wait until a recalibration installs.
  bool installed = false;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (!installed && Clock::now() < deadline) {
    v1::RecalibrateResponse r2;
    installed = s.Recalibrate("lstm", &r2).ok();
    if (installed) {
      EXPECT_EQ(r2.models(0).model_version(), version + 1);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  }
  EXPECT_TRUE(installed) << s.Log();
  EXPECT_EQ(s.Terminate(), 0) << s.Log();
}

// The calibration sample store (the reservoir of windows since the last calibration) survives
// kill -9: the restarted server's feed is too slow to collect calibration.min_samples fresh
// windows, yet a recalibration right after the start has them (windows that arrived before the
// restart, as the history records).
TEST(State, CalibrationSamplesSurviveKillNine) {
  const std::string dir = FreshDir("samples");
  {
    Server s("samples1", {"state.dir=" + dir, "state.samples_interval_s=0.5"});
    ASSERT_TRUE(s.WaitCalibrated()) << s.Log();
    // Until the file holds at least 2000 windows (its u32 count at byte 20).
    const std::string file = dir + "/lstm/samples.bin";
    const auto until = Clock::now() + std::chrono::seconds(60);
    uint32_t count = 0;
    while (count < 2000 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::ifstream f(file, std::ios::binary);
      f.seekg(20);
      if (!f.read(reinterpret_cast<char*>(&count), sizeof count)) count = 0;
    }
    ASSERT_GE(count, 2000u) << s.Log();
    s.Kill9();
  }
  const int64_t restart_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  Server s("samples2", {"state.dir=" + dir, "sim.rate=20", "calibration.min_samples=1500"});
  ASSERT_TRUE(s.WaitServing()) << s.Log();
  EXPECT_THAT(s.Log(), HasSubstr("calibration windows restored from " + dir));
  // The session carries over (its count, not only the sample), before any fresh windows.
  EXPECT_GE(s.Scrape()["qsig_calibration_session_windows{model=\"mlp\"}"], 2000);
  v1::RecalibrateResponse rr;
  const grpc::Status st = s.Recalibrate("lstm", &rr);
  ASSERT_TRUE(st.ok()) << st.error_message() << "\n" << s.Log();
  ASSERT_EQ(rr.models_size(), 1);
  EXPECT_GE(rr.models(0).samples(), 1500u);
  v1::ListModelsResponse lm;
  ASSERT_TRUE(s.ListModels(&lm).ok());
  const auto* m = Find(lm, "lstm");
  ASSERT_NE(m, nullptr);
  ASSERT_GT(m->history_size(), 0);
  const auto& last = m->history(m->history_size() - 1);
  EXPECT_EQ(last.reason(), "admin");
  EXPECT_GT(last.samples_first_unix_ns(), 0);
  EXPECT_LT(last.samples_first_unix_ns(), restart_ns);
  EXPECT_EQ(s.Terminate(), 0) << s.Log();
  // The orderly shutdown wrote the store again; a damaged file is refused and the server runs.
  {
    std::fstream f(dir + "/lstm/samples.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  Server d("samples3", {"state.dir=" + dir});
  ASSERT_TRUE(d.WaitServing()) << d.Log();
  EXPECT_THAT(d.Log(), HasSubstr("model lstm: calibration samples in"));
  EXPECT_THAT(d.Log(), HasSubstr("hash mismatch"));
  EXPECT_EQ(d.Terminate(), 0) << d.Log();
}

TEST(State, RollbackSwapsAnEarlierVersionInWithoutAGap) {
  Server s("rollback", {"state.dir=" + FreshDir("rollback")});
  ASSERT_TRUE(s.WaitCalibrated()) << s.Log();
  v1::RecalibrateResponse rr;
  ASSERT_TRUE(s.Recalibrate("lstm", &rr).ok()) << s.Log();
  v1::ListModelsResponse list;
  ASSERT_TRUE(s.ListModels(&list).ok());
  const uint64_t first = Find(list, "lstm")->history(0).version();
  const uint64_t current = Find(list, "lstm")->current_version();
  ASSERT_GT(current, first);

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SubscribeRequest req;
  req.add_models("lstm");
  req.add_instruments("AAPL");
  auto reader = s.signals->Subscribe(&ctx, req);
  std::vector<v1::Signal> got;
  v1::Signal sig;
  while (got.size() < 20 && reader->Read(&sig)) got.push_back(sig);
  ASSERT_EQ(got.size(), 20u);

  grpc::ClientContext rctx;
  v1::RollbackRequest rreq;
  rreq.set_model("lstm");
  rreq.set_version(first);
  v1::RollbackResponse rresp;
  grpc::Status st = s.admin->Rollback(&rctx, rreq, &rresp);
  ASSERT_TRUE(st.ok()) << st.error_message() << s.Log();
  EXPECT_EQ(rresp.model_version(), current + 1);
  EXPECT_NE(rresp.precision(), "fp32");
  // Read on until signals of the new version have arrived.
  size_t new_seen = 0;
  while (new_seen < 20 && reader->Read(&sig)) {
    got.push_back(sig);
    if (sig.model_version() == rresp.model_version()) ++new_seen;
  }
  ctx.TryCancel();
  EXPECT_EQ(new_seen, 20u);
  for (size_t i = 1; i < got.size(); ++i) {
    ASSERT_EQ(got[i].sequence(), got[i - 1].sequence() + 1) << "gap at " << i;
    EXPECT_EQ(got[i].epoch(), got[0].epoch());
    EXPECT_NE(got[i].flags() & kFlagWarmup, kFlagWarmup);
  }
  ASSERT_TRUE(s.ListModels(&list).ok());
  const auto* m = Find(list, "lstm");
  EXPECT_EQ(m->current_version(), rresp.model_version());
  const auto& last = m->history(m->history_size() - 1);
  EXPECT_EQ(last.reason(), "rollback");
  EXPECT_EQ(last.rollback_of(), first);
  EXPECT_EQ(last.artifact_sha256(), m->history(0).artifact_sha256());

  // Unknown versions are refused; the model keeps serving.
  grpc::ClientContext bctx;
  rreq.set_version(999);
  EXPECT_EQ(s.admin->Rollback(&bctx, rreq, &rresp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.Scrape()["qsig_model_rollbacks_total"], 1);
  EXPECT_EQ(s.Terminate(), 0) << s.Log();
}

TEST(State, ForcedDivergenceFallsBackToFp32UntilARecalibrationPasses) {
  Server s("fallback", {"shadow.fallback_relative_rmse=0.3", "shadow.fallback_after_s=2",
                        "drift.interval_s=0.25"});
  ASSERT_TRUE(s.WaitCalibrated()) << s.Log();
  grpc::ClientContext ictx;
  v1::InjectMiscalibrationRequest ireq;
  ireq.set_model("lstm");
  ireq.set_input_scale_factor(0.01);
  v1::InjectMiscalibrationResponse iresp;
  grpc::Status st = s.admin->InjectMiscalibration(&ictx, ireq, &iresp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const auto injected = Clock::now();
  v1::GetModelStatusResponse status;
  bool fell_back = false;
  while (!fell_back && Clock::now() < injected + std::chrono::seconds(30)) {
    ASSERT_TRUE(s.Status("lstm", &status).ok());
    fell_back = status.fallback();
    if (!fell_back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(fell_back) << s.Log();
  // Not before the divergence has lasted shadow.fallback_after_s.
  EXPECT_GE(Clock::now() - injected, std::chrono::seconds(2));
  EXPECT_EQ(status.precision(), "fp32");
  EXPECT_GT(status.current_version(), iresp.model_version());
  EXPECT_EQ(status.current().reason(), "fallback");
  const auto sig = s.FirstSignals("lstm", 5);
  ASSERT_EQ(sig.size(), 5u);
  for (const auto& x : sig) {
    EXPECT_EQ(x.precision(), "fp32");
    EXPECT_EQ(x.flags() & kFlagFallback, kFlagFallback);
    EXPECT_EQ(x.flags() & kFlagWarmup, 0u);
  }
  EXPECT_EQ(s.Scrape()["qsig_model_fallback{model=\"lstm\"}"], 1);
  EXPECT_EQ(s.Scrape()["qsig_model_fallbacks_total{model=\"lstm\"}"], 1);
  // It stays on FP32: the warm-up calibration does not bring INT8 back by itself.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_TRUE(s.Status("lstm", &status).ok());
  EXPECT_TRUE(status.fallback());

  v1::RecalibrateResponse rr;
  st = s.Recalibrate("lstm", &rr);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(s.Status("lstm", &status).ok());
  EXPECT_FALSE(status.fallback());
  EXPECT_NE(status.precision(), "fp32");
  for (const auto& x : s.FirstSignals("lstm", 5)) {
    EXPECT_EQ(x.precision(), "int8");
    EXPECT_EQ(x.flags() & kFlagFallback, 0u);
    EXPECT_EQ(x.model_version(), rr.models(0).model_version());
  }
  EXPECT_EQ(s.Scrape()["qsig_model_fallback{model=\"lstm\"}"], 0);
  v1::ListModelsResponse list;
  ASSERT_TRUE(s.ListModels(&list).ok());
  std::vector<std::string> reasons;
  for (const auto& h : Find(list, "lstm")->history()) reasons.push_back(h.reason());
  EXPECT_THAT(reasons, ::testing::ElementsAre("warmup", "admin", "fallback", "admin"));
  // The MLP was never touched.
  ASSERT_TRUE(s.Status("mlp", &status).ok());
  EXPECT_FALSE(status.fallback());
  EXPECT_EQ(s.Terminate(), 0) << s.Log();
}

}  // namespace
}  // namespace qsig::testing

namespace qsig::testing {
namespace {

const v1::DriftAlarm* Alarm(const v1::GetModelStatusResponse& r, const std::string& kind) {
  for (const auto& a : r.alarms()) {
    if (a.kind() == kind) return &a;
  }
  return nullptr;
}

// Distribution drift end to end: the simulator's volatility triples at 10 s of its clock
// (message timestamps advance 20 us per message, so at sim.rate 25000 the switch comes ~20 s
// after the feed starts; the test follows the simulator's clock through the packet count). The
// warm-up model's reference is sampled over drift.span_s = 5 s after 5 s of settling. Before the
// switch no psi / wasserstein alarm; after it the alarm rises within 30 s naming a feature; a
// recalibration on the new regime clears it and it stays clear.
TEST(State, VolatilityRegimeSwitchRaisesDistributionDriftAndARecalibrationClearsIt) {
  Server s("regime",
           {"sim.rate=25000", "calibration.warmup_samples=2000", "calibration.samples=4000",
            "calibration.min_samples=500", "drift.interval_s=0.5", "drift.span_s=5",
            // Drift, not the worsening gate, is under test: under load a candidate calibrated
            // on a few thousand windows of the tripled regime validated once at 5.2% relative
            // RMSE against the default 5% floor, refusing the recalibration the test needs.
            "calibration.worsening_floor=0.15", "sim.regimes=[{at_s: 10, volatility: 3}]"});
  const auto start = Clock::now();
  ASSERT_TRUE(s.WaitCalibrated()) << s.Log();
  auto raised = [&] {
    const auto m = s.Scrape();
    double n = 0;
    for (const char* k : {"psi", "wasserstein"}) {
      for (const char* model : {"mlp", "lstm"}) {
        const auto it = m.find(std::string("qsig_drift_alarms_total{model=\"") + model +
                               "\",kind=\"" + k + "\"}");
        if (it != m.end()) n += it->second;
      }
    }
    return n;
  };
  // The feed's packet count (8 messages per packet) tells the simulator's clock: under load it
  // may send slower than sim.rate.
  const auto packets = [&] {
    double n = 0;
    for (const auto& [k, v] : s.Scrape()) {
      if (k.rfind("qsig_feed_packets_total", 0) == 0) n += v;
    }
    return n;
  };
  // The same market as at calibration: no distribution alarm up to 2 s (simulator clock) before
  // the switch, by when the reference (5 s of settling, then 5 s) is complete.
  while (packets() * 8 < 400000 && Clock::now() < start + std::chrono::seconds(120)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  v1::GetModelStatusResponse st;
  ASSERT_TRUE(s.Status("lstm", &st).ok());
  ASSERT_NE(Alarm(st, "wasserstein"), nullptr);
  EXPECT_GT(Alarm(st, "wasserstein")->threshold(), 0) << s.Log();
  EXPECT_GT(Alarm(st, "psi")->threshold(), 0);
  EXPECT_EQ(raised(), 0) << "a distribution alarm before the regime switch\n" << s.Log();

  // The switch comes after 500k simulator messages (10 s / 20 us). An alarm within 30 s of it,
  // naming the feature that moved most.
  auto switched = Clock::time_point::max();
  bool active = false;
  std::string worst;
  while (!active && Clock::now() < start + std::chrono::seconds(150) &&
         (switched == Clock::time_point::max() ||
          Clock::now() < switched + std::chrono::seconds(30))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    if (switched == Clock::time_point::max() && packets() * 8 >= 500000) switched = Clock::now();
    ASSERT_TRUE(s.Status("lstm", &st).ok());
    for (const char* k : {"wasserstein", "psi"}) {
      if (Alarm(st, k)->active()) active = true, worst = Alarm(st, k)->worst_feature();
    }
  }
  ASSERT_NE(switched, Clock::time_point::max()) << "the simulator never reached the switch";
  ASSERT_TRUE(active) << s.Log();
  EXPECT_FALSE(worst.empty());
  EXPECT_GT(raised(), 0);
  EXPECT_THAT(s.Log(), HasSubstr("drift alarm RAISED: model lstm"));

  // Recalibrate on the new regime (the store holds only its windows by now): the alarm clears,
  // a new reference is collected over drift.span_s, and the new regime scores clear against it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  v1::RecalibrateResponse rr;
  ASSERT_TRUE(s.Recalibrate("", &rr).ok()) << s.Log();
  const double after_recalibration = raised();
  for (int i = 0; i < 24; ++i) {  // 12 s: 5 s of reference, then 14 evaluations.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ASSERT_TRUE(s.Status("lstm", &st).ok());
    EXPECT_FALSE(Alarm(st, "wasserstein")->active()) << i;
    EXPECT_FALSE(Alarm(st, "psi")->active()) << i;
  }
  EXPECT_EQ(raised(), after_recalibration) << s.Log();
  EXPECT_EQ(s.Terminate(), 0) << s.Log();
}

}  // namespace
}  // namespace qsig::testing
