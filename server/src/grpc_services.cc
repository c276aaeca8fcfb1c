// gRPC front end: qsig.v1.SignalService and qsig.v1.AdminService on the synchronous server API,
// plus the standard health service and server reflection. Streams read from per-subscriber
// queues filled by the SignalBus, so a slow client only ever loses its own oldest signals.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "qsig/v1/signal.grpc.pb.h"
#include "server_core.h"
#include "spdlog/spdlog.h"

namespace qsig::server {
namespace {

void ToProto(const Core& core, const SignalRecord& r, v1::Signal* s) {
  s->set_instrument(core.symbols->Get(r.locate));
  s->set_locate(r.locate);
  s->set_model(core.slots[r.model]->name());
  s->set_value(std::isfinite(r.value) ? r.value : 0.0);
  s->set_sequence(r.sequence);
  s->set_exchange_ts_ns(r.exchange_ts_ns);
  s->set_publish_ts_ns(r.publish_wall_ns);
  s->set_model_version(r.model_version);
  s->set_flags(r.flags);
  s->set_mid_price(r.mid_price);
  s->set_feed_sequence(r.feed_sequence);
  s->set_tick_to_signal_ns(r.tick_to_signal_ns);
  s->set_precision((r.flags & kSignalWarmup) ? "fp32" : "int8");
}

class SignalServiceImpl final : public v1::SignalService::Service {
 public:
  explicit SignalServiceImpl(Core* core) : core_(core) {}

  grpc::Status Subscribe(grpc::ServerContext* ctx, const v1::SubscribeRequest* req,
                         grpc::ServerWriter<v1::Signal>* writer) override {
    std::vector<uint64_t> symbols;
    for (const auto& name : req->instruments()) {
      if (name.empty() || name.size() > 8) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("instrument '", name, "': symbols are 1..8 characters"));
      }
      symbols.push_back(SymbolTable::Pack(name));
    }
    std::vector<uint16_t> models;
    for (const auto& name : req->models()) {
      const int m = core_->ModelIndex(name);
      if (m < 0) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("unknown model '", name, "'"));
      }
      models.push_back(static_cast<uint16_t>(m));
    }
    auto sub = core_->bus->Subscribe(std::move(symbols), std::move(models),
                                     static_cast<size_t>(core_->config.grpc.subscriber_queue));
    std::vector<SignalRecord> batch;
    v1::Signal msg;
    grpc::Status result = grpc::Status::OK;
    while (!ctx->IsCancelled() && core_->running.load(std::memory_order_relaxed)) {
      if (sub->PopBatch(&batch, 256, 100) == 0) continue;
      bool ok = true;
      for (size_t i = 0; i < batch.size() && ok; ++i) {
        ToProto(*core_, batch[i], &msg);
        // No buffer hint: a synchronous Write waits for its op to complete, and a corked
        // (buffer-hinted) write may not complete until a later write, which never comes.
        ok = writer->Write(msg);
      }
      if (!ok) break;  // Client went away.
    }
    core_->bus->Unsubscribe(sub);
    return result;
  }

  grpc::Status GetLatest(grpc::ServerContext*, const v1::GetLatestRequest* req,
                         v1::GetLatestResponse* resp) override {
    std::vector<uint64_t> wanted;
    for (const auto& name : req->instruments()) wanted.push_back(SymbolTable::Pack(name));
    SignalRecord r;
    for (int loc = 0; loc <= core_->max_locate; ++loc) {
      const uint16_t locate = static_cast<uint16_t>(loc);
      if (!wanted.empty() &&
          std::find(wanted.begin(), wanted.end(), core_->symbols->Word(locate)) == wanted.end()) {
        continue;
      }
      for (size_t m = 0; m < core_->slots.size(); ++m) {
        if (core_->WorkerFor(locate).latest(locate, m).Load(&r)) {
          ToProto(*core_, r, resp->add_signals());
        }
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest* req,
                       v1::PredictResponse* resp) override {
    const int m = req->model().empty() ? 0 : core_->ModelIndex(req->model());
    if (m < 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown model '", req->model(), "'"));
    }
    const ModelSlot& slot = *core_->slots[m];
    const std::shared_ptr<const Installed> cur = slot.Acquire();  // One consistent bundle.
    const size_t in = static_cast<size_t>(cur->spec->input_size);
    const size_t w = static_cast<size_t>(cur->spec->window);
    std::vector<float> window;
    if (static_cast<size_t>(req->features_size()) == in * w) {
      window.assign(req->features().begin(), req->features().end());
    } else if (static_cast<size_t>(req->features_size()) == in) {
      for (size_t t = 0; t < w; ++t) {
        window.insert(window.end(), req->features().begin(), req->features().end());
      }
    } else {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("model '", slot.name(), "' takes ", in, " features (one vector) or ", in * w,
                       " (a window of ", w, "); got ", req->features_size()));
    }
    for (size_t i = 0; i < window.size(); ++i) {
      if (!std::isfinite(window[i])) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("features[", i, "] is not finite"));
      }
    }
    std::vector<float> ws(slot.workspace_capacity());
    const float fp32 = cur->fp32->Run(window, ws.data());
    resp->set_model(slot.name());
    resp->set_fp32_value(fp32);
    resp->set_model_version(cur->version);
    if (cur->model) {
      resp->set_int8_value(cur->model->Run(window, ws.data()));
    } else {
      resp->set_int8_value(fp32);
      resp->set_flags(kSignalWarmup);
    }
    return grpc::Status::OK;
  }

 private:
  Core* core_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(Core* core) : core_(core) {}

  grpc::Status Recalibrate(grpc::ServerContext*, const v1::RecalibrateRequest* req,
                           v1::RecalibrateResponse* resp) override {
    std::vector<size_t> targets;
    if (req->model().empty()) {
      for (size_t i = 0; i < core_->slots.size(); ++i) targets.push_back(i);
    } else {
      const int m = core_->ModelIndex(req->model());
      if (m < 0) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("unknown model '", req->model(), "'"));
      }
      targets.push_back(static_cast<size_t>(m));
    }
    std::string failures;
    for (size_t m : targets) {
      const CalibrationReport r = core_->Recalibrate(m, req->max_samples());
      spdlog::info("recalibrate {}: {} ({} samples, version {}, rel RMSE {:.4f})", r.model,
                   r.message, r.samples, r.version,
                   r.fp32_rms > 0 ? r.validation_rmse / r.fp32_rms : 0.0);
      if (!r.installed)
        absl::StrAppend(&failures, failures.empty() ? "" : "; ", r.model, ": ", r.message);
      auto* out = resp->add_models();
      out->set_model(r.model);
      out->set_model_version(r.version);
      out->set_samples(r.samples);
      out->set_validation_rmse(r.validation_rmse);
      out->set_fp32_rms(r.fp32_rms);
      out->set_sign_agreement(r.sign_agreement);
    }
    if (!failures.empty()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat(failures, " (the previous model keeps serving)"));
    }
    return grpc::Status::OK;
  }

  grpc::Status ReloadModel(grpc::ServerContext*, const v1::ReloadModelRequest* req,
                           v1::ReloadModelResponse* resp) override {
    const int m = core_->ModelIndex(req->model());
    if (m < 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown model '", req->model(), "'"));
    }
    auto r = core_->Reload(static_cast<size_t>(m), req->path());
    if (!r.ok()) {
      spdlog::error("{}", std::string(r.status().message()));
      const auto code = r.status().code() == absl::StatusCode::kNotFound
                            ? grpc::StatusCode::NOT_FOUND
                            : grpc::StatusCode::FAILED_PRECONDITION;
      return grpc::Status(code, std::string(r.status().message()));
    }
    resp->set_model(req->model());
    resp->set_model_version(r->version);
    resp->set_format(r->format);
    resp->set_precision(r->precision);
    resp->set_sha256(r->sha256);
    return grpc::Status::OK;
  }

 private:
  Core* core_;
};

class GrpcFrontendImpl final : public GrpcFrontend {
 public:
  explicit GrpcFrontendImpl(Core* core) : signals_(core), admin_(core) {}

  absl::Status Start(const std::string& listen) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&signals_);
    builder.RegisterService(&admin_);
    server_ = builder.BuildAndStart();
    if (!server_ || port == 0) {
      return absl::UnavailableError(
          absl::StrCat("grpc.listen: cannot listen on ", listen, " (address in use or invalid)"));
    }
    host_ = listen.substr(0, listen.rfind(':'));
    port_ = port;
    return absl::OkStatus();
  }

  std::string address() const override { return absl::StrCat(host_, ":", port_); }

  void Shutdown() override {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      server_->Wait();
      server_.reset();
    }
  }

  ~GrpcFrontendImpl() override { Shutdown(); }

 private:
  SignalServiceImpl signals_;
  AdminServiceImpl admin_;
  std::unique_ptr<grpc::Server> server_;
  std::string host_;
  int port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcFrontend>> StartGrpc(Core* core) {
  auto fe = std::make_unique<GrpcFrontendImpl>(core);
  if (auto st = fe->Start(core->config.grpc.listen); !st.ok()) return st;
  return std::unique_ptr<GrpcFrontend>(std::move(fe));
}

}  // namespace qsig::server
