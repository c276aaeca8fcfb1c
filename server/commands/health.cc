// `qsig health`: is a running `qsig serve` healthy? Exit 0 if its SignalService answers a gRPC
// call and its /metrics answers HTTP 200 within the timeout, 1 otherwise (with the reason on
// stderr). The addresses come from the server's run file (what it actually bound: a container's
// HEALTHCHECK follows --set grpc.listen / metrics.listen), or from --config / --set.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "command.h"
#include "config_flags.h"
#include "qsig/v1/signal.grpc.pb.h"
#include "run_file.h"

namespace qsig::commands {
namespace {

// A wildcard bind address is probed on loopback.
std::string ProbeAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return listen;
  const std::string host = listen.substr(0, colon);
  if (host == "0.0.0.0" || host == "*" || host.empty()) return "127.0.0.1" + listen.substr(colon);
  if (host == "[::]") return "[::1]" + listen.substr(colon);
  return listen;
}

// How the probe reaches a secured SignalService. TLS: the probe checks that the service
// answers, not who it is (it runs beside the server), so the server certificate is not
// verified; with mutual TLS it presents the server's own certificate and key. A client token
// file: its first line as the bearer token.
struct Security {
  std::string tls_cert, tls_key, tls_client_ca, client_token_file;
};

std::shared_ptr<grpc::ChannelCredentials> ProbeCredentials(const Security& s) {
  if (s.tls_cert.empty()) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions o;
  o.set_verify_server_certs(false);
  o.set_check_call_host(false);
  o.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  if (!s.tls_client_ca.empty()) {
    o.set_certificate_provider(std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        s.tls_key, s.tls_cert, 3600));
    o.watch_identity_key_cert_pairs();
  }
  return grpc::experimental::TlsCredentials(o);
}

std::string CheckGrpc(const std::string& address, const Security& sec, double timeout_s) {
  auto channel = grpc::CreateChannel(address, ProbeCredentials(sec));
  auto stub = qsig::v1::SignalService::NewStub(channel);
  grpc::ClientContext ctx;
  if (!sec.client_token_file.empty()) {
    std::ifstream in(sec.client_token_file);
    std::string token;
    if (!std::getline(in, token) || token.empty() || token.size() > 4096) {
      return "gRPC " + address + ": cannot read grpc.client_token_file " + sec.client_token_file;
    }
    ctx.AddMetadata("authorization", "Bearer " + token);
  }
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  qsig::v1::GetLatestRequest req;
  req.add_instruments("QSIGHLTH");  // An instrument no feed has: a cheap, read-only call.
  qsig::v1::GetLatestResponse resp;
  const grpc::Status st = stub->GetLatest(&ctx, req, &resp);
  // INVALID_ARGUMENT for the unknown symbol still proves the service answers.
  if (st.ok() || st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
      st.error_code() == grpc::StatusCode::NOT_FOUND) {
    return "";
  }
  return "gRPC " + address + ": " + st.error_message() + " (code " +
         std::to_string(static_cast<int>(st.error_code())) + ")";
}

// GET /metrics over a plain socket; every step bounded by the deadline.
std::string CheckMetrics(const std::string& address, double timeout_s) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return "metrics " + address + ": expected host:port";
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &ai) != 0 || !ai) {
    return "metrics " + address + ": cannot resolve";
  }
  const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int timeout_ms = static_cast<int>(timeout_s * 1000);
  std::string error;
  auto wait = [&](short events) {
    pollfd p{fd, events, 0};
    return poll(&p, 1, timeout_ms) == 1 && !(p.revents & (POLLERR | POLLNVAL));
  };
  if (fd < 0) {
    error = "metrics: socket failed";
  } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
    error = "metrics " + address + ": connection refused";
  } else if (!wait(POLLOUT)) {
    error = "metrics " + address + ": no connection within the timeout";
  } else {
    const std::string req = "GET /metrics HTTP/1.0\r\nHost: " + address + "\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      error = "metrics " + address + ": cannot send the request";
    } else if (!wait(POLLIN)) {
      error = "metrics " + address + ": no answer within the timeout";
    } else {
      char buf[64] = {};
      const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
      const std::string status(buf, n > 0 ? static_cast<size_t>(n) : 0);
      if (status.rfind("HTTP/1.", 0) != 0 || status.find(" 200") == std::string::npos) {
        error = "metrics " + address + ": answered '" + status.substr(0, status.find('\r')) + "'";
      }
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(ai);
  return error;
}

struct HealthOptions {
  ConfigFlags config;
  double timeout_s = 3;
  bool quiet = false;
};

int RunHealth(const HealthOptions& o) {
  std::string grpc, metrics;
  Security sec;
  if (!o.config.path.empty()) {
    auto loaded = LoadConfigOrReport(o.config);
    if (!loaded) return kExitConfig;
    const config::Config& c = loaded->config;
    grpc = c.grpc.listen;
    metrics = c.metrics.listen;
    sec = {c.grpc.tls.cert_file, c.grpc.tls.key_file, c.grpc.tls.client_ca_file,
           c.grpc.client_token_file};
  } else {
    std::string error;
    auto run = ReadRunFile(&error);
    if (!run) {
      std::fprintf(stderr, "qsig health: %s\n", error.c_str());
      return 1;
    }
    grpc = run->grpc;
    metrics = run->metrics;
    sec = {run->tls_cert, run->tls_key, run->tls_client_ca, run->client_token_file};
  }
  grpc = ProbeAddress(grpc);
  metrics = ProbeAddress(metrics);
  std::string error = CheckGrpc(grpc, sec, o.timeout_s);
  if (error.empty()) error = CheckMetrics(metrics, o.timeout_s);
  if (!error.empty()) {
    std::fprintf(stderr, "qsig health: unhealthy: %s\n", error.c_str());
    return 1;
  }
  if (!o.quiet)
    std::printf("qsig health: ok (gRPC %s, metrics %s)\n", grpc.c_str(), metrics.c_str());
  return 0;
}

}  // namespace

Command AddHealthCommand(CLI::App& app) {
  auto o = std::make_shared<HealthOptions>();
  CLI::App* sub = app.add_subcommand(
      "health",
      "Exit 0 if a running server's gRPC and /metrics answer (addresses from its run file, "
      "$QSIG_RUN_DIR/serve.run, or from --config)");
  AddConfigFlags(sub, &o->config);  // Probe the addresses a config names instead.
  sub->add_option("--timeout", o->timeout_s, "Seconds per check")->check(CLI::Range(0.1, 60.0));
  sub->add_flag("-q,--quiet", o->quiet, "Print nothing when healthy");
  return {sub, [o] { return RunHealth(*o); }};
}

}  // namespace qsig::commands
