#include "admin_model_rpcs.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "drift_monitor.h"
#include "qsig/feeds/clock.h"
#include "spdlog/spdlog.h"

namespace qsig::server {
namespace {

grpc::Status ToGrpc(const absl::Status& st) {
  grpc::StatusCode code = grpc::StatusCode::FAILED_PRECONDITION;
  switch (st.code()) {
    case absl::StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case absl::StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kDataLoss:
      code = grpc::StatusCode::DATA_LOSS;
      break;
    default:
      break;
  }
  return grpc::Status(code, std::string(st.message()));
}

// The model a request names, or NOT_FOUND.
grpc::Status FindModel(const ServerState& state, const std::string& name, size_t* m) {
  const int i = state.ModelIndex(name);
  if (i < 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("unknown model '", name, "'"));
  }
  *m = static_cast<size_t>(i);
  return grpc::Status::OK;
}

void ToProto(const HistoryEntry& e, v1::ModelVersion* out) {
  out->set_version(e.version);
  out->set_reason(e.reason);
  out->set_installed_unix_ns(e.installed_unix_ns);
  out->set_precision(e.precision);
  out->set_source_sha256(e.source_sha256);
  out->set_artifact_sha256(e.artifact_sha256);
  out->set_calibration_method(e.calibration_method);
  out->set_samples(e.samples);
  out->set_samples_first_unix_ns(e.samples_first_unix_ns);
  out->set_samples_last_unix_ns(e.samples_last_unix_ns);
  out->set_relative_rmse_vs_fp32(e.relative_rmse_vs_fp32);
  out->set_relative_rmse_vs_incumbent(e.relative_rmse_vs_incumbent);
  out->set_isa(e.isa);
  out->set_rollback_of(e.rollback_of);
  out->set_artifact_kept(!e.artifact_file.empty());
}

const char* Serving(const Installed& i) { return i.int8 ? i.int8->precision() : "fp32"; }

}  // namespace

grpc::Status ListModelsRpc(ServerState& state, const v1::ListModelsRequest&,
                           v1::ListModelsResponse* resp) {
  resp->set_epoch(state.epoch);
  for (size_t m = 0; m < state.slots.size(); ++m) {
    const std::shared_ptr<const Installed> cur = state.slots[m]->Acquire();
    auto* out = resp->add_models();
    out->set_model(state.slots[m]->name());
    out->set_current_version(cur->version);
    out->set_precision(Serving(*cur));
    out->set_fallback(cur->fallback);
    const ModelState st = state.state_store->Get(m);
    for (const HistoryEntry& e : st.history) ToProto(e, out->add_history());
  }
  return grpc::Status::OK;
}

grpc::Status GetModelStatusRpc(ServerState& state, const v1::GetModelStatusRequest& req,
                               v1::GetModelStatusResponse* resp) {
  size_t m = 0;
  if (grpc::Status st = FindModel(state, req.model(), &m); !st.ok()) return st;
  const std::shared_ptr<const Installed> cur = state.slots[m]->Acquire();
  const ServerState::FallbackTrack& t = state.fallback_track[m];
  resp->set_model(state.slots[m]->name());
  resp->set_current_version(cur->version);
  resp->set_precision(Serving(*cur));
  resp->set_fallback(cur->fallback);
  resp->set_shadow_relative_rmse(t.shadow_relative_rmse.load(std::memory_order_relaxed));
  resp->set_fallback_threshold(state.config.shadow.fallback_relative_rmse);
  const int64_t since = t.diverged_since_ns.load(std::memory_order_relaxed);
  resp->set_diverged_for_s(since ? static_cast<double>(feeds::MonotonicNanos() - since) * 1e-9
                                 : 0.0);
  resp->set_epoch(state.epoch);
  const DriftMonitor& d = *state.drift[m];
  for (int k = 0; k < kDriftKinds; ++k) {
    const DriftKind kind = static_cast<DriftKind>(k);
    auto* a = resp->add_alarms();
    a->set_kind(DriftKindName(kind));
    a->set_score(d.score(kind));
    a->set_threshold(d.threshold(kind));
    a->set_active(d.alarm(kind));
    a->set_worst_feature(d.worst_feature(kind));
  }
  auto* fb = resp->add_alarms();
  fb->set_kind("fallback");
  fb->set_score(t.shadow_relative_rmse.load(std::memory_order_relaxed));
  fb->set_threshold(state.config.shadow.fallback_relative_rmse);
  fb->set_active(cur->fallback);
  const ModelState st = state.state_store->Get(m);
  if (const HistoryEntry* e = st.Find(cur->version)) ToProto(*e, resp->mutable_current());
  return grpc::Status::OK;
}

grpc::Status RollbackRpc(ServerState& state, const v1::RollbackRequest& req,
                         v1::RollbackResponse* resp) {
  size_t m = 0;
  if (grpc::Status st = FindModel(state, req.model(), &m); !st.ok()) return st;
  auto r = state.Rollback(m, req.version());
  if (!r.ok()) {
    spdlog::error("rollback: {}", std::string(r.status().message()));
    return ToGrpc(r.status());
  }
  resp->set_model(req.model());
  resp->set_model_version(r->version);
  resp->set_precision(r->precision);
  return grpc::Status::OK;
}

grpc::Status ClearFallbackRpc(ServerState& state, const v1::ClearFallbackRequest& req,
                              v1::ClearFallbackResponse* resp) {
  size_t m = 0;
  if (grpc::Status st = FindModel(state, req.model(), &m); !st.ok()) return st;
  auto r = state.ClearFallback(m);
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_model(req.model());
  resp->set_model_version(r->version);
  return grpc::Status::OK;
}

grpc::Status InjectMiscalibrationRpc(ServerState& state, const v1::InjectMiscalibrationRequest& req,
                                     v1::InjectMiscalibrationResponse* resp) {
  size_t m = 0;
  if (grpc::Status st = FindModel(state, req.model(), &m); !st.ok()) return st;
  auto r = state.InjectMiscalibration(m, req.input_scale_factor());
  if (!r.ok()) return ToGrpc(r.status());
  resp->set_model(req.model());
  resp->set_model_version(r->version);
  return grpc::Status::OK;
}

}  // namespace qsig::server
