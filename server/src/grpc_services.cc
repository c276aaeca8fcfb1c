// gRPC front end: qsig.v1.SignalService and qsig.v1.AdminService, plus the standard health
// service and server reflection. Signal streams run on the callback API and are fed by the
// SignalBus (no thread per stream, a bounded ring per subscriber: a slow client only ever loses
// its own oldest signals); unary calls run on a bounded pool of synchronous threads.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <unordered_set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "admin_model_rpcs.h"
#include "qsig/v1/signal.grpc.pb.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {
namespace {

void ToProto(const ServerState& state, const SignalRecord& r, v1::Signal* s) {
  s->set_instrument(state.symbols->Get(r.locate));
  s->set_locate(r.locate);
  s->set_model(state.slots[r.model]->name());
  s->set_value(std::isfinite(r.value) ? r.value : 0.0);
  s->set_sequence(r.sequence);
  s->set_exchange_ts_ns(r.exchange_ts_ns);
  s->set_publish_ts_ns(r.publish_wall_ns);
  s->set_model_version(r.model_version);
  s->set_flags(r.flags);
  s->set_mid_price(r.mid_price);
  s->set_feed_sequence(r.feed_sequence);
  s->set_tick_to_signal_ns(r.tick_to_signal_ns);
  s->set_precision((r.flags & (kSignalWarmup | kSignalFallback)) ? "fp32" : "int8");
  s->set_epoch(state.epoch);
}

// Symbols as the feed writes them: 1..8 printable ASCII characters, no spaces.
bool WellFormedSymbol(const std::string& s) {
  if (s.empty() || s.size() > 8) return false;
  for (unsigned char ch : s) {
    if (ch < 0x21 || ch > 0x7e) return false;
  }
  return true;
}

// The filter a SubscribeRequest asks for, or the status that refuses it.
grpc::Status BuildFilter(const ServerState& state, const v1::SubscribeRequest& req,
                         SubscriptionFilter* out) {
  const int cap = state.config.grpc.max_instruments_per_subscription;
  if (req.instruments_size() > cap) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat(req.instruments_size(), " instruments requested; at most ", cap,
                     " per subscription (grpc.max_instruments_per_subscription)"));
  }
  // Known symbols: those the feed has published and, with the built-in simulator, its universe.
  std::unordered_set<uint64_t> known;
  if (req.instruments_size() > 0) {
    for (int l = 0; l < state.symbols->size(); ++l) {
      const uint64_t w = state.symbols->Word(static_cast<uint16_t>(l));
      if (w != 0) known.insert(w);
    }
    if (state.config.feed.source == "sim") {
      for (const auto& s : state.config.sim.instruments) known.insert(SymbolTable::Pack(s));
    }
  }
  out->symbols.clear();
  for (const auto& name : req.instruments()) {
    if (!WellFormedSymbol(name)) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("instrument '", absl::CHexEscape(name.substr(0, 16)),
                       "': symbols are 1..8 printable ASCII characters without spaces"));
    }
    const uint64_t w = SymbolTable::Pack(name);
    if (!known.contains(w)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("instrument '", name,
                                       "' is unknown (not in the feed's instruments seen so far)"));
    }
    out->symbols.push_back(w);
  }
  out->models.clear();
  for (const auto& name : req.models()) {
    const int m = state.ModelIndex(name);
    if (m < 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("unknown model '", name, "'"));
    }
    out->models.push_back(static_cast<uint16_t>(m));
  }
  out->n_models = static_cast<int>(state.slots.size());
  return grpc::Status::OK;
}

// A stream refused before it started.
template <typename Msg>
class RejectedStream final : public grpc::ServerWriteReactor<Msg> {
 public:
  explicit RejectedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// One Subscribe (Msg = Signal: one signal per message) or SubscribeBatch (Msg = SignalBatch:
// everything queued per message) stream on the callback API. No thread waits for it: the signal
// publisher starts a write when it queues into an idle stream, and the completion of a write
// starts the next one while signals are queued (see Subscriber).
template <typename Msg>
class SignalStream final : public grpc::ServerWriteReactor<Msg>, public SubscriberSink {
 public:
  static constexpr bool kBatch = std::is_same_v<Msg, v1::SignalBatch>;
  // Signals per message: bounded so that a message stays far below gRPC's default 4 MB limit.
  static constexpr size_t kMaxPerMessage = kBatch ? 4096 : 1;
  static constexpr size_t kChunk = kBatch ? 128 : 1;  // Records copied out of the ring at once.

  SignalStream(ServerState* state, std::atomic<int>* open) : state_(state), open_(open) {}

  void Start(SubscriptionFilter filter) {
    sub_ = state_->bus->Subscribe(std::move(filter),
                                  static_cast<size_t>(state_->config.grpc.subscriber_queue), this);
  }

  bool StartNextWrite(Subscriber& from) noexcept override {
    size_t n = 0;
    if constexpr (kBatch) {
      msg_.clear_signals();  // Keeps the elements' memory for reuse.
      msg_.set_epoch(state_->epoch);
      size_t got = 0;
      while (n < kMaxPerMessage &&
             (got = from.Take(records_, std::min(kChunk, kMaxPerMessage - n))) > 0) {
        for (size_t i = 0; i < got; ++i) ToProto(*state_, records_[i], msg_.add_signals());
        n += got;
      }
    } else {
      n = from.Take(records_, 1);
      if (n > 0) ToProto(*state_, records_[0], &msg_);
    }
    if (n == 0) return false;
    DeliveryCounters& c = state_->bus->counters();
    constexpr int kRpc = kBatch ? DeliveryCounters::kSubscribeBatch : DeliveryCounters::kSubscribe;
    c.messages[kRpc].fetch_add(1, std::memory_order_relaxed);
    c.signals[kRpc].fetch_add(n, std::memory_order_relaxed);
    this->StartWrite(&msg_);
    return true;
  }

  void EndStream() noexcept override { this->Finish(grpc::Status::OK); }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<Subscriber> keep = sub_;  // This reactor may be gone once the write chain ends.
    keep->WriteDone(ok);
  }
  void OnCancel() override {
    std::shared_ptr<Subscriber> keep = sub_;
    keep->Close();
  }
  void OnDone() override {
    state_->bus->Unsubscribe(sub_);
    open_->fetch_sub(1, std::memory_order_relaxed);
    delete this;
  }

 private:
  ServerState* state_;
  std::atomic<int>* open_;
  std::shared_ptr<Subscriber> sub_;
  SignalRecord records_[kChunk];
  Msg msg_;
};

// Subscribe and SubscribeBatch on the callback API; the unary methods stay on the synchronous
// API (their handlers may compute, which callback threads must not).
class SignalServiceImpl final
    : public v1::SignalService::WithCallbackMethod_Subscribe<
          v1::SignalService::WithCallbackMethod_SubscribeBatch<v1::SignalService::Service>> {
 public:
  explicit SignalServiceImpl(ServerState* state) : state_(state) {}

  grpc::ServerWriteReactor<v1::Signal>* Subscribe(grpc::CallbackServerContext*,
                                                  const v1::SubscribeRequest* req) override {
    return Open<v1::Signal>(*req);
  }

  grpc::ServerWriteReactor<v1::SignalBatch>* SubscribeBatch(
      grpc::CallbackServerContext*, const v1::SubscribeRequest* req) override {
    return Open<v1::SignalBatch>(*req);
  }

  grpc::Status GetLatest(grpc::ServerContext*, const v1::GetLatestRequest* req,
                         v1::GetLatestResponse* resp) override {
    const int cap = state_->config.grpc.max_instruments_per_subscription;
    if (req->instruments_size() > cap) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat(req->instruments_size(), " instruments requested; at most ",
                                       cap, " (grpc.max_instruments_per_subscription)"));
    }
    std::unordered_set<uint64_t> wanted;
    for (const auto& name : req->instruments()) wanted.insert(SymbolTable::Pack(name));
    SignalRecord r;
    for (int loc = 0; loc <= state_->max_locate; ++loc) {
      const uint16_t locate = static_cast<uint16_t>(loc);
      if (!wanted.empty() && !wanted.contains(state_->symbols->Word(locate))) continue;
      for (size_t m = 0; m < state_->slots.size(); ++m) {
        if (state_->WorkerFor(locate).latest(locate, m).Load(&r)) {
          ToProto(*state_, r, resp->add_signals());
        }
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Predict(grpc::ServerContext*, const v1::PredictRequest* req,
                       v1::PredictResponse* resp) override {
    const int m = req->model().empty() ? 0 : state_->ModelIndex(req->model());
    if (m < 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown model '", req->model(), "'"));
    }
    const ModelSlot& slot = *state_->slots[m];
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
    if (cur->int8) {
      resp->set_int8_value(cur->int8->Run(window, ws.data()));
    } else {
      resp->set_int8_value(fp32);
      resp->set_flags(cur->fallback ? kSignalFallback : kSignalWarmup);
    }
    return grpc::Status::OK;
  }

 private:
  template <typename Msg>
  grpc::ServerWriteReactor<Msg>* Open(const v1::SubscribeRequest& req) {
    DeliveryCounters& c = state_->bus->counters();
    const int max = state_->config.grpc.max_streams;
    if (open_.fetch_add(1, std::memory_order_relaxed) >= max) {
      open_.fetch_sub(1, std::memory_order_relaxed);
      c.rejected_max_streams.fetch_add(1, std::memory_order_relaxed);
      return new RejectedStream<Msg>(
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::StrCat(max, " signal streams are open (grpc.max_streams)")));
    }
    SubscriptionFilter filter;
    if (grpc::Status st = BuildFilter(*state_, req, &filter); !st.ok()) {
      open_.fetch_sub(1, std::memory_order_relaxed);
      (st.error_code() == grpc::StatusCode::NOT_FOUND ? c.rejected_not_found
                                                      : c.rejected_invalid_argument)
          .fetch_add(1, std::memory_order_relaxed);
      return new RejectedStream<Msg>(std::move(st));
    }
    auto* stream = new SignalStream<Msg>(state_, &open_);
    stream->Start(std::move(filter));
    return stream;
  }

  ServerState* state_;
  std::atomic<int> open_{0};  // Subscribe + SubscribeBatch streams.
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(ServerState* state) : state_(state) {}

  grpc::Status Recalibrate(grpc::ServerContext*, const v1::RecalibrateRequest* req,
                           v1::RecalibrateResponse* resp) override {
    std::vector<size_t> targets;
    if (req->model().empty()) {
      for (size_t i = 0; i < state_->slots.size(); ++i) targets.push_back(i);
    } else {
      const int m = state_->ModelIndex(req->model());
      if (m < 0) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("unknown model '", req->model(), "'"));
      }
      targets.push_back(static_cast<size_t>(m));
    }
    std::string failures;
    for (size_t m : targets) {
      const CalibrationReport r = state_->Recalibrate(m, req->max_samples());
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
    const int m = state_->ModelIndex(req->model());
    if (m < 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown model '", req->model(), "'"));
    }
    auto r = state_->Reload(static_cast<size_t>(m), req->path());
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

  // ---- Model history, status and rollback (admin_model_rpcs.cc) ----
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest* req,
                          v1::ListModelsResponse* resp) override {
    return ListModelsRpc(*state_, *req, resp);
  }
  grpc::Status GetModelStatus(grpc::ServerContext*, const v1::GetModelStatusRequest* req,
                              v1::GetModelStatusResponse* resp) override {
    return GetModelStatusRpc(*state_, *req, resp);
  }
  grpc::Status Rollback(grpc::ServerContext*, const v1::RollbackRequest* req,
                        v1::RollbackResponse* resp) override {
    return RollbackRpc(*state_, *req, resp);
  }
  grpc::Status ClearFallback(grpc::ServerContext*, const v1::ClearFallbackRequest* req,
                             v1::ClearFallbackResponse* resp) override {
    return ClearFallbackRpc(*state_, *req, resp);
  }
  grpc::Status InjectMiscalibration(grpc::ServerContext*,
                                    const v1::InjectMiscalibrationRequest* req,
                                    v1::InjectMiscalibrationResponse* resp) override {
    return InjectMiscalibrationRpc(*state_, *req, resp);
  }

 private:
  ServerState* state_;
};

// Credentials for the listening port. Insecure today; TLS/mTLS (issue 11) plugs in here.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const config::Config&) {
  return grpc::InsecureServerCredentials();
}

class GrpcFrontendImpl final : public GrpcFrontend {
 public:
  explicit GrpcFrontendImpl(ServerState* state) : state_(state), signals_(state), admin_(state) {}

  absl::Status Start(const config::Config& config) {
    const std::string& listen = config.grpc.listen;
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, ServerCredentials(config), &port);
    builder.RegisterService(&signals_);
    builder.RegisterService(&admin_);
    // Signal streams hold no thread (callback API); unary and admin calls share a small
    // synchronous pool, so the thread count stays bounded whatever clients open.
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
    grpc::ResourceQuota quota("qsig-grpc");
    quota.SetMaxThreads(kMaxSyncThreads);
    builder.SetResourceQuota(quota);
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
      // Idle streams end with OK now; a write a client never reads is cancelled at the deadline.
      state_->bus->CloseAll();
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      server_->Wait();
      server_.reset();
    }
  }

  ~GrpcFrontendImpl() override { Shutdown(); }

 private:
  static constexpr int kMaxSyncThreads = 32;

  ServerState* state_;
  SignalServiceImpl signals_;
  AdminServiceImpl admin_;
  std::unique_ptr<grpc::Server> server_;
  std::string host_;
  int port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcFrontend>> StartGrpc(ServerState* state) {
  auto fe = std::make_unique<GrpcFrontendImpl>(state);
  // The publisher thread starts after the front end (Server::Start).
  state->bus->set_publisher_spin_us(state->config.grpc.publisher_spin_us);
  if (auto st = fe->Start(state->config); !st.ok()) return st;
  return std::unique_ptr<GrpcFrontend>(std::move(fe));
}

}  // namespace qsig::server
