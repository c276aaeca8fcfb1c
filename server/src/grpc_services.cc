// gRPC front end: qsig.v1.SignalService (grpc.listen) and qsig.v1.AdminService on its own
// listener (admin.listen), each with the standard health service and server reflection; TLS or
// mTLS on both when configured, bearer tokens, message-size and stream limits. Signal streams run
// on the callback API and are fed by the SignalBus (no thread per stream, a bounded ring per
// subscriber: a slow client only ever loses its own oldest signals); unary calls run on a bounded
// pool of synchronous threads.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "admin_model_rpcs.h"
#include "qsig/feeds/feed_processor.h"
#include "qsig/v1/signal.grpc.pb.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {
namespace {

// A small file (certificate, key, token), read whole; at most 1 MiB.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  std::string text(1 << 20, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// Equal without an early exit: the time taken does not depend on where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

// True when `md` carries "authorization: Bearer <token>".
bool BearerMatches(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                   const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  bool ok = false;
  for (auto [it, end] = md.equal_range("authorization"); it != end; ++it) {
    const std::string_view v(it->second.data(), it->second.size());
    if (v.size() > kBearer.size() && v.substr(0, kBearer.size()) == kBearer &&
        ConstantTimeEquals(v.substr(kBearer.size()), token)) {
      ok = true;
    }
  }
  return ok;
}

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

// The shard that owns `symbol` under feed.shard, or -1 when no shard is known to own it (an
// explicit list of this shard's symbols only, without a shard map).
int OwnerShard(const config::ShardConfig& sh, std::string_view symbol) {
  if (sh.count <= 1 && sh.symbols.empty()) return 0;
  if (!sh.shard_symbols.empty()) {
    for (size_t i = 0; i < sh.shard_symbols.size(); ++i) {
      for (const std::string& x : sh.shard_symbols[i]) {
        if (x == symbol) return static_cast<int>(i);
      }
    }
    return -1;
  }
  if (!sh.symbols.empty()) {
    for (const std::string& x : sh.symbols) {
      if (x == symbol) return sh.index;
    }
    return -1;
  }
  return feeds::ShardOfSymbol(symbol, sh.count);
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
    for (const SymbolTable* t : {state.symbols.get(), state.directory.get()}) {
      for (int l = 0; l < t->size(); ++l) {
        const uint64_t w = t->Word(static_cast<uint16_t>(l));
        if (w != 0) known.insert(w);
      }
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
    const config::ShardConfig& sh = state.config.feed.shard;
    if (const int owner = OwnerShard(sh, name); owner != sh.index) {
      const std::string where =
          owner < 0 ? "no shard this server knows of"
                    : absl::StrCat(
                          "shard ", owner,
                          sh.addresses.empty()
                              ? std::string()
                              : absl::StrCat(" (", sh.addresses[static_cast<size_t>(owner)], ")"));
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("instrument '", name, "' is published by ", where,
                                       ", not by shard ", sh.index, " (see GetTopology)"));
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
  SignalServiceImpl(ServerState* state, std::string token)
      : state_(state), token_(std::move(token)) {}

  grpc::ServerWriteReactor<v1::Signal>* Subscribe(grpc::CallbackServerContext* ctx,
                                                  const v1::SubscribeRequest* req) override {
    if (grpc::Status st = Authorize(*ctx); !st.ok()) return new RejectedStream<v1::Signal>(st);
    return Open<v1::Signal>(*req);
  }

  grpc::ServerWriteReactor<v1::SignalBatch>* SubscribeBatch(
      grpc::CallbackServerContext* ctx, const v1::SubscribeRequest* req) override {
    if (grpc::Status st = Authorize(*ctx); !st.ok()) {
      return new RejectedStream<v1::SignalBatch>(st);
    }
    return Open<v1::SignalBatch>(*req);
  }

  grpc::Status GetLatest(grpc::ServerContext* ctx, const v1::GetLatestRequest* req,
                         v1::GetLatestResponse* resp) override {
    if (grpc::Status st = Authorize(*ctx); !st.ok()) return st;
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

  grpc::Status GetTopology(grpc::ServerContext* ctx, const v1::GetTopologyRequest*,
                           v1::GetTopologyResponse* resp) override {
    if (grpc::Status st = Authorize(*ctx); !st.ok()) return st;
    const config::ShardConfig& sh = state_->config.feed.shard;
    resp->set_shard_count(static_cast<uint32_t>(sh.count));
    resp->set_this_shard(static_cast<uint32_t>(sh.index));
    const bool listed = !sh.shard_symbols.empty() || !sh.symbols.empty();
    resp->set_scheme(listed ? "list" : "hash");
    std::vector<std::vector<std::string>> owned(static_cast<size_t>(sh.count));
    if (!sh.shard_symbols.empty()) {
      owned = sh.shard_symbols;
    } else if (!sh.symbols.empty()) {
      owned[static_cast<size_t>(sh.index)] = sh.symbols;
    } else {
      // Hash sharding: every symbol of the feed's directory seen so far (and the simulator's
      // universe), each under the shard it hashes to.
      std::set<std::string> all;
      for (int l = 0; l < state_->directory->size(); ++l) {
        const auto locate = static_cast<uint16_t>(l);
        if (state_->directory->Known(locate)) all.insert(state_->directory->Get(locate));
      }
      if (state_->config.feed.source == "sim") {
        all.insert(state_->config.sim.instruments.begin(), state_->config.sim.instruments.end());
      }
      for (const std::string& sym : all) {
        owned[static_cast<size_t>(feeds::ShardOfSymbol(sym, sh.count))].push_back(sym);
      }
    }
    for (int i = 0; i < sh.count; ++i) {
      v1::Shard* out = resp->add_shards();
      out->set_index(static_cast<uint32_t>(i));
      if (!sh.addresses.empty()) out->set_address(sh.addresses[static_cast<size_t>(i)]);
      std::vector<std::string>& list = owned[static_cast<size_t>(i)];
      std::sort(list.begin(), list.end());
      for (const std::string& sym : list) out->add_instruments(sym);
    }
    return grpc::Status::OK;
  }

  grpc::Status Predict(grpc::ServerContext* ctx, const v1::PredictRequest* req,
                       v1::PredictResponse* resp) override {
    if (grpc::Status st = Authorize(*ctx); !st.ok()) return st;
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
      // Inputs outside what the INT8 input quantization represents are clipped: say so.
      const auto clip = state_->GetClipRange(static_cast<size_t>(m));
      if (clip && clip->int8 == cur->int8.get() && clip->lo.size() == in && clip->hi.size() == in) {
        for (size_t i = 0; i < window.size(); ++i) {
          if (window[i] < clip->lo[i % in] || window[i] > clip->hi[i % in]) {
            resp->set_flags(kSignalInputClipped);
            break;
          }
        }
      }
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

  // grpc.client_token_file: every call carries "authorization: Bearer <token>".
  template <typename Context>
  grpc::Status Authorize(const Context& ctx) {
    if (token_.empty() || BearerMatches(ctx.client_metadata(), token_)) return grpc::Status::OK;
    state_->signal_denied.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "SignalService needs \"authorization: Bearer <token>\" metadata "
                        "(grpc.client_token_file)");
  }

  ServerState* state_;
  std::string token_;
  std::atomic<int> open_{0};  // Subscribe + SubscribeBatch streams.
};

// Who may call AdminService: the admin.token_file token, or a verified client certificate whose
// identity is in admin.allowed_identities; with neither configured (then admin.listen is
// loopback, checked at config load), anyone who can reach the port.
class AdminGuard {
 public:
  AdminGuard(ServerState* state, std::string token, std::vector<std::string> identities)
      : state_(state), token_(std::move(token)), identities_(std::move(identities)) {}

  grpc::Status Check(const grpc::ServerContext& ctx) const {
    if (token_.empty() && identities_.empty()) return grpc::Status::OK;
    const auto& md = ctx.client_metadata();
    const bool has_token = md.find("authorization") != md.end();
    if (!token_.empty() && has_token) {
      if (BearerMatches(md, token_)) return grpc::Status::OK;
      return Deny(ServerState::kDeniedBadToken, grpc::StatusCode::UNAUTHENTICATED,
                  "AdminService: the bearer token is not valid (admin.token_file)");
    }
    bool has_identity = false;
    if (!identities_.empty()) {
      const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
      for (const char* prop : {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
        for (const grpc::string_ref& v : auth->FindPropertyValues(prop)) {
          has_identity = true;
          const std::string id(v.data(), v.size());
          if (std::find(identities_.begin(), identities_.end(), id) != identities_.end()) {
            return grpc::Status::OK;
          }
        }
      }
    }
    if (has_identity) {
      return Deny(ServerState::kDeniedIdentity, grpc::StatusCode::PERMISSION_DENIED,
                  "AdminService: the client certificate's identity is not in "
                  "admin.allowed_identities");
    }
    return Deny(ServerState::kDeniedNoCredentials, grpc::StatusCode::UNAUTHENTICATED,
                "AdminService needs credentials: \"authorization: Bearer <token>\" metadata "
                "(admin.token_file) or a client certificate listed in admin.allowed_identities");
  }

 private:
  grpc::Status Deny(ServerState::AdminDenied reason, grpc::StatusCode code, const char* msg) const {
    state_->admin_denied[reason].fetch_add(1, std::memory_order_relaxed);
    return grpc::Status(code, msg);
  }

  ServerState* state_;
  std::string token_;
  std::vector<std::string> identities_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(ServerState* state, const AdminGuard* guard) : state_(state), guard_(guard) {}

  grpc::Status Recalibrate(grpc::ServerContext* ctx, const v1::RecalibrateRequest* req,
                           v1::RecalibrateResponse* resp) override {
    if (grpc::Status st = guard_->Check(*ctx); !st.ok()) return st;
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

  grpc::Status ReloadModel(grpc::ServerContext* ctx, const v1::ReloadModelRequest* req,
                           v1::ReloadModelResponse* resp) override {
    if (grpc::Status st = guard_->Check(*ctx); !st.ok()) return st;
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
                        : r.status().code() == absl::StatusCode::kUnavailable
                            ? grpc::StatusCode::UNAVAILABLE
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
  const AdminGuard* guard_;
};

// Credentials for both listening ports: plaintext when no certificate is configured, else TLS
// from files that a watcher re-reads when they change (certificate rotation without a
// restart); with grpc.tls.client_ca_file, a client certificate signed by that CA is required.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::Config& config) {
  const config::TlsConfig& tls = config.grpc.tls;
  if (tls.cert_file.empty()) return grpc::InsecureServerCredentials();
  // The watcher only logs unreadable files: check them now, naming the key.
  for (const auto& [key, file] : {std::pair{"grpc.tls.cert_file", tls.cert_file},
                                  {"grpc.tls.key_file", tls.key_file},
                                  {"grpc.tls.client_ca_file", tls.client_ca_file}}) {
    if (file.empty()) continue;
    auto text = ReadSmallFile(file);
    if (!text.ok())
      return absl::FailedPreconditionError(absl::StrCat(key, ": ", text.status().message()));
    if (text->find("-----BEGIN ") == std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat(key, ": ", file, " is not PEM"));
    }
  }
  constexpr unsigned int kRefreshSeconds = 5;
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.client_ca_file, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

// A secret (token) file: its first line, surrounding whitespace removed; never logged.
absl::StatusOr<std::string> ReadToken(const char* key, const std::string& file) {
  auto text = ReadSmallFile(file);
  if (!text.ok())
    return absl::FailedPreconditionError(absl::StrCat(key, ": ", text.status().message()));
  std::string token(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
  if (token.size() < 16) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, ": ", file, " must hold a token of at least 16 characters"));
  }
  return token;
}

class GrpcFrontendImpl final : public GrpcFrontend {
 public:
  GrpcFrontendImpl(ServerState* state, std::string client_token, std::string admin_token)
      : state_(state),
        signals_(state, std::move(client_token)),
        guard_(state, std::move(admin_token), state->config.admin.allowed_identities),
        admin_(state, &guard_) {}

  absl::Status Start(const config::Config& config) {
    auto creds = ServerCredentials(config);
    if (!creds.ok()) return creds.status();
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    // SignalService: signal streams hold no thread (callback API); unary calls share a small
    // synchronous pool, so the thread count stays bounded whatever clients open.
    auto signal = Build(config, config.grpc.listen, "grpc.listen", *creds, &signals_,
                        kMaxSyncThreads, &signal_port_);
    if (!signal.ok()) return signal.status();
    signal_server_ = std::move(*signal);
    // AdminService on its own listener (admin.listen), never on the SignalService port.
    auto admin = Build(config, config.admin.listen, "admin.listen", *creds, &admin_,
                       kMaxAdminThreads, &admin_port_);
    if (!admin.ok()) {
      Shutdown();
      return admin.status();
    }
    admin_server_ = std::move(*admin);
    return absl::OkStatus();
  }

  std::string address() const override {
    return HostPort(state_->config.grpc.listen, signal_port_);
  }
  std::string admin_address() const override {
    return HostPort(state_->config.admin.listen, admin_port_);
  }

  void Shutdown() override {
    if (admin_server_) {
      admin_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      admin_server_->Wait();
      admin_server_.reset();
    }
    if (signal_server_) {
      // Idle streams end with OK now; a write a client never reads is cancelled at the deadline.
      state_->bus->CloseAll();
      signal_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
      signal_server_->Wait();
      signal_server_.reset();
    }
  }

  ~GrpcFrontendImpl() override { Shutdown(); }

 private:
  static constexpr int kMaxSyncThreads = 32;
  static constexpr int kMaxAdminThreads = 4;

  static std::string HostPort(const std::string& listen, int port) {
    return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  }

  static absl::StatusOr<std::unique_ptr<grpc::Server>> Build(
      const config::Config& config, const std::string& listen, const char* key,
      const std::shared_ptr<grpc::ServerCredentials>& creds, grpc::Service* service,
      int max_threads, int* port) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(listen, creds, port);
    builder.RegisterService(service);
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
    grpc::ResourceQuota quota(absl::StrCat("qsig-", key));
    quota.SetMaxThreads(max_threads);
    builder.SetResourceQuota(quota);
    // Limits: message size both ways, HTTP/2 streams per connection.
    builder.SetMaxReceiveMessageSize(config.grpc.max_message_bytes);
    builder.SetMaxSendMessageSize(config.grpc.max_message_bytes);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, config.grpc.max_concurrent_streams);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || *port == 0) {
      return absl::UnavailableError(
          absl::StrCat(key, ": cannot listen on ", listen, " (address in use or invalid)"));
    }
    return server;
  }

  ServerState* state_;
  SignalServiceImpl signals_;
  AdminGuard guard_;
  AdminServiceImpl admin_;
  std::unique_ptr<grpc::Server> signal_server_, admin_server_;
  int signal_port_ = 0, admin_port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcFrontend>> StartGrpc(ServerState* state) {
  const config::Config& config = state->config;
  std::string client_token, admin_token;
  if (!config.grpc.client_token_file.empty()) {
    auto t = ReadToken("grpc.client_token_file", config.grpc.client_token_file);
    if (!t.ok()) return t.status();
    client_token = std::move(*t);
  }
  if (!config.admin.token_file.empty()) {
    auto t = ReadToken("admin.token_file", config.admin.token_file);
    if (!t.ok()) return t.status();
    admin_token = std::move(*t);
  }
  auto fe =
      std::make_unique<GrpcFrontendImpl>(state, std::move(client_token), std::move(admin_token));
  // The publisher thread starts after the front end (Server::Start).
  state->bus->set_publisher_spin_us(state->config.grpc.publisher_spin_us);
  if (auto st = fe->Start(state->config); !st.ok()) return st;
  return std::unique_ptr<GrpcFrontend>(std::move(fe));
}

}  // namespace qsig::server
