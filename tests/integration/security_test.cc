// "Safe to put on a network" (issue 11) against the real `qsig serve` on loopback: TLS and mTLS
// with certificates the test issues with the openssl CLI, bearer tokens for AdminService and
// SignalService, AdminService on its own listener only, ReloadModel confined to admin.model_dir
// (FIFOs, devices, directories, escapes and oversized files refused at once, the server still
// recalibrates and stops), Recalibrate's gates, half-open connections to /metrics, Predict's
// clipped-input flag and a duplicate YAML key.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process.h"
#include "qsig/v1/signal.grpc.pb.h"

namespace qsig::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A fresh directory under the test's temp dir.
std::string MakeDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "qsig_security_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Runs the openssl CLI; fails the test with its output if it fails.
void Openssl(const std::string& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  Child c(args, dir + "/openssl.log");
  ASSERT_TRUE(c.started());
  ASSERT_EQ(c.Wait(30000), 0) << c.Log();
}

// A CA, a server certificate for 127.0.0.1 and two client certificates (CN operator-1, which
// the admin allow-list names, and CN intruder), all P-256 and signed by the CA.
struct Pki {
  std::string dir, ca, server_cert, server_key;
  std::string Cert(const std::string& who) const { return dir + "/" + who + ".pem"; }
  std::string Key(const std::string& who) const { return dir + "/" + who + ".key"; }
};

Pki MakePki(const std::string& name) {
  Pki p;
  p.dir = MakeDir(name);
  const auto key_args = std::vector<std::string>{"-newkey", "ec", "-pkeyopt",
                                                 "ec_paramgen_curve:prime256v1", "-nodes"};
  p.ca = p.dir + "/ca.pem";
  std::vector<std::string> ca = {"req", "-x509", "-keyout", p.dir + "/ca.key", "-out",
                                 p.ca,  "-days", "2",       "-subj",           "/CN=qsig test CA"};
  ca.insert(ca.begin() + 2, key_args.begin(), key_args.end());
  Openssl(p.dir, ca);
  WriteFile(p.dir + "/server.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  WriteFile(p.dir + "/client.ext", "extendedKeyUsage=clientAuth\n");
  for (const std::string who : {"server", "operator-1", "intruder"}) {
    std::vector<std::string> req = {
        "req", "-keyout", p.Key(who), "-out", p.dir + "/" + who + ".csr", "-subj", "/CN=" + who};
    req.insert(req.begin() + 1, key_args.begin(), key_args.end());
    Openssl(p.dir, req);
    Openssl(p.dir, {"x509", "-req", "-in", p.dir + "/" + who + ".csr", "-CA", p.ca, "-CAkey",
                    p.dir + "/ca.key", "-CAcreateserial", "-days", "2", "-out", p.Cert(who),
                    "-extfile", p.dir + (who == "server" ? "/server.ext" : "/client.ext")});
  }
  p.server_cert = p.Cert("server");
  p.server_key = p.Key("server");
  return p;
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const Pki& p, const std::string& who) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ReadAll(p.ca);
  if (!who.empty()) {
    o.pem_cert_chain = ReadAll(p.Cert(who));
    o.pem_private_key = ReadAll(p.Key(who));
  }
  return grpc::SslCredentials(o);
}

std::shared_ptr<grpc::Channel> Channel(int port,
                                       std::shared_ptr<grpc::ChannelCredentials> creds = nullptr) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             creds ? creds : grpc::InsecureChannelCredentials());
}

// GetLatest on `channel`, with an optional bearer token and a short deadline.
grpc::Status GetLatest(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& token = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::GetLatestRequest req;
  v1::GetLatestResponse resp;
  return v1::SignalService::NewStub(channel)->GetLatest(&ctx, req, &resp);
}

// `qsig serve` on the demo config with ephemeral ports and `extra` --set overrides.
class Server {
 public:
  Server(const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> sets = {"workers.cores=[]", "calibration.warmup_samples=300",
                                     "calibration.min_samples=300"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    const std::vector<std::string> args =
        ServeArgs(QSIG_BINARY, QSIG_SOURCE_DIR "/config/demo.yaml", sets, &grpc_port_, &admin_port_,
                  &metrics_port_);
    child_ = std::make_unique<Child>(args, ::testing::TempDir() + "qsig_security_" + name + ".log");
  }
  // Waits until the server has started every listener (it prints "qsig serving" then).
  bool WaitStarted() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Log().find("qsig serving") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // Waits until every model serves INT8 (the warm-up calibration) and returns the scrape.
  std::map<std::string, double> WaitCalibrated() {
    std::map<std::string, double> m;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
    while (std::chrono::steady_clock::now() < deadline) {
      m = Scrape();
      if (m["qsig_model_version{model=\"mlp\"}"] >= 1 &&
          m["qsig_model_version{model=\"lstm\"}"] >= 1)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return m;
  }
  std::map<std::string, double> Scrape() {
    return ParseMetrics(HttpGet(metrics_port_, "/metrics", nullptr, 3000));
  }
  int grpc_port() const { return grpc_port_; }
  int admin_port() const { return admin_port_; }
  int metrics_port() const { return metrics_port_; }
  Child& child() { return *child_; }
  std::string Log() const { return child_->Log(); }

 private:
  int grpc_port_ = 0, admin_port_ = 0, metrics_port_ = 0;
  std::unique_ptr<Child> child_;
};

grpc::Status Reload(v1::AdminService::Stub& admin, const std::string& model,
                    const std::string& path, const std::string& token = "",
                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::ReloadModelRequest req;
  req.set_model(model);
  req.set_path(path);
  v1::ReloadModelResponse resp;
  return admin.ReloadModel(&ctx, req, &resp);
}

grpc::Status Recalibrate(v1::AdminService::Stub& admin, const std::string& token = "",
                         uint32_t max_samples = 0, v1::RecalibrateResponse* out = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::RecalibrateRequest req;
  req.set_model("mlp");
  req.set_max_samples(max_samples);
  v1::RecalibrateResponse resp;
  return admin.Recalibrate(&ctx, req, out ? out : &resp);
}

// `qsig health` (the container's HEALTHCHECK) against the server whose run file is in `run_dir`;
// returns its exit code.
int Health(const std::string& run_dir) {
  setenv("QSIG_RUN_DIR", run_dir.c_str(), 1);
  Child c({QSIG_BINARY, "health", "--timeout", "5"}, run_dir + "/health.log");
  unsetenv("QSIG_RUN_DIR");
  const int code = c.Wait(20000);
  if (code != 0) ADD_FAILURE() << c.Log();
  return code;
}

TEST(Security, TlsServesTlsClientsRefusesPlaintextAndRotatesCertificates) {
  const Pki pki = MakePki("tls");
  // The server reads copies that the test replaces below.
  const std::string server_cert = pki.dir + "/served.pem", server_key = pki.dir + "/served.key";
  std::filesystem::copy_file(pki.server_cert, server_cert);
  std::filesystem::copy_file(pki.server_key, server_key);
  setenv("QSIG_RUN_DIR", pki.dir.c_str(), 1);  // The server's run file, for `qsig health`.
  Server server("tls", {"grpc.tls.cert_file=" + server_cert, "grpc.tls.key_file=" + server_key});
  unsetenv("QSIG_RUN_DIR");
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  EXPECT_EQ(Health(pki.dir), 0) << "the health check follows TLS";
  const grpc::Status tls_ok = GetLatest(Channel(server.grpc_port(), TlsCredentials(pki, "")));
  EXPECT_TRUE(tls_ok.ok()) << tls_ok.error_message() << server.Log();
  const grpc::Status plain = GetLatest(Channel(server.grpc_port()));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  // The admin listener uses the same credentials.
  auto admin = v1::AdminService::NewStub(Channel(server.admin_port(), TlsCredentials(pki, "")));
  EXPECT_EQ(Reload(*admin, "nope", "").error_code(), grpc::StatusCode::NOT_FOUND);
  auto plain_admin = v1::AdminService::NewStub(Channel(server.admin_port()));
  EXPECT_EQ(Reload(*plain_admin, "nope", "").error_code(), grpc::StatusCode::UNAVAILABLE);

  // Rotation: new files (another CA's server certificate) are picked up without a restart.
  const Pki next = MakePki("tls_next");
  std::filesystem::copy_file(next.server_cert, server_cert + ".new");
  std::filesystem::copy_file(next.server_key, server_key + ".new");
  std::filesystem::rename(server_key + ".new", server_key);
  std::filesystem::rename(server_cert + ".new", server_cert);
  bool rotated = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!rotated && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    rotated = GetLatest(Channel(server.grpc_port(), TlsCredentials(next, ""))).ok();
  }
  EXPECT_TRUE(rotated) << "the new certificate was not served";
  EXPECT_FALSE(GetLatest(Channel(server.grpc_port(), TlsCredentials(pki, ""))).ok())
      << "the old certificate is still served";
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();
}

TEST(Security, MutualTlsNeedsASignedClientCertificateAndAdminAnAllowedIdentity) {
  const Pki pki = MakePki("mtls");
  Server server("mtls",
                {"grpc.tls.cert_file=" + pki.server_cert, "grpc.tls.key_file=" + pki.server_key,
                 "grpc.tls.client_ca_file=" + pki.ca, "admin.allowed_identities=[operator-1]"});
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  EXPECT_NE(GetLatest(Channel(server.grpc_port(), TlsCredentials(pki, ""))).error_code(),
            grpc::StatusCode::OK)
      << "a client without a certificate must be refused";
  EXPECT_TRUE(GetLatest(Channel(server.grpc_port(), TlsCredentials(pki, "intruder"))).ok());
  // A certificate from another CA is refused too.
  const Pki other = MakePki("mtls_other");
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ReadAll(pki.ca);
  o.pem_cert_chain = ReadAll(other.Cert("operator-1"));
  o.pem_private_key = ReadAll(other.Key("operator-1"));
  EXPECT_NE(GetLatest(Channel(server.grpc_port(), grpc::SslCredentials(o))).error_code(),
            grpc::StatusCode::OK);

  // AdminService: the allow-listed identity passes authentication (then: unknown model), a
  // signed certificate with another identity is PERMISSION_DENIED.
  auto op =
      v1::AdminService::NewStub(Channel(server.admin_port(), TlsCredentials(pki, "operator-1")));
  EXPECT_EQ(Reload(*op, "nope", "").error_code(), grpc::StatusCode::NOT_FOUND);
  auto intruder =
      v1::AdminService::NewStub(Channel(server.admin_port(), TlsCredentials(pki, "intruder")));
  const grpc::Status denied = Reload(*intruder, "mlp", "");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.error_message();
  const auto m = server.Scrape();
  EXPECT_EQ(m.at("qsig_admin_denied_total{reason=\"identity\"}"), 1);
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();
}

TEST(Security, TokensGuardAdminAndSignalServicesAndRecalibrateHasGates) {
  const std::string dir = MakeDir("tokens");
  const std::string admin_token = "admin-0123456789abcdef0123456789";
  const std::string client_token = "client-0123456789abcdef01234567";
  WriteFile(dir + "/admin.token", admin_token + "\n");
  WriteFile(dir + "/client.token", client_token + "\n");
  setenv("QSIG_RUN_DIR", dir.c_str(), 1);  // The server's run file, for `qsig health`.
  Server server("tokens",
                {"admin.token_file=" + dir + "/admin.token",
                 "grpc.client_token_file=" + dir + "/client.token", "calibration.cooldown_s=60"});
  unsetenv("QSIG_RUN_DIR");
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  EXPECT_EQ(Health(dir), 0) << "the health check carries the client token";
  auto admin = v1::AdminService::NewStub(Channel(server.admin_port()));

  EXPECT_EQ(Reload(*admin, "mlp", "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Recalibrate(*admin).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Reload(*admin, "mlp", "", "admin-wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Recalibrate(*admin, admin_token + "x").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Recalibrate(*admin, client_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // SignalService: its own token.
  const auto signals = Channel(server.grpc_port());
  EXPECT_EQ(GetLatest(signals).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetLatest(signals, admin_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GetLatest(signals, client_token).ok());

  auto m = server.WaitCalibrated();
  ASSERT_GE(m["qsig_model_version{model=\"mlp\"}"], 1) << server.Log();
  EXPECT_EQ(m["qsig_admin_denied_total{reason=\"no_credentials\"}"], 2);
  EXPECT_EQ(m["qsig_admin_denied_total{reason=\"bad_token\"}"], 3);
  EXPECT_EQ(m["qsig_grpc_unauthenticated_total"], 2);

  // Recalibrate: too few samples asked for; then one swap, then the cool-down.
  grpc::Status st = Recalibrate(*admin, admin_token, 50);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("calibration.min_samples"));
  v1::RecalibrateResponse resp;
  st = Recalibrate(*admin, admin_token, 0, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message() << "\n" << server.Log();
  ASSERT_EQ(resp.models_size(), 1);
  EXPECT_GE(resp.models(0).samples(), 300u);
  st = Recalibrate(*admin, admin_token);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("calibration.cooldown_s"));

  // The right token reloads the configured model.
  st = Reload(*admin, "mlp", "", admin_token);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_THAT(server.Log(), Not(HasSubstr(admin_token))) << "a token must never be logged";
  EXPECT_THAT(server.Log(), Not(HasSubstr(client_token)));
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();
}

TEST(Security, AdminServiceIsNotOnTheSignalPortAndNeedsCredentialsOffLoopback) {
  // SignalService on every interface; clients here connect only through 127.0.0.1.
  const int port = FreePort();
  Server server("wildcard", {"grpc.listen=0.0.0.0:" + std::to_string(port)});
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  EXPECT_TRUE(GetLatest(Channel(port)).ok());
  auto on_signal_port = v1::AdminService::NewStub(Channel(port));
  EXPECT_EQ(Reload(*on_signal_port, "mlp", "").error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Recalibrate(*on_signal_port).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  // Without credentials, loopback callers reach it on admin.listen.
  auto admin = v1::AdminService::NewStub(Channel(server.admin_port()));
  EXPECT_EQ(Reload(*admin, "nope", "").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();

  Child refused({QSIG_BINARY, "serve", "--config", QSIG_SOURCE_DIR "/config/demo.yaml", "--set",
                 "admin.listen=0.0.0.0:0", "--set", "grpc.listen=127.0.0.1:0", "--set",
                 "metrics.listen=127.0.0.1:0"},
                ::testing::TempDir() + "qsig_security_admin_refused.log");
  EXPECT_EQ(refused.Wait(10000), 2);
  EXPECT_THAT(refused.Log(), HasSubstr("admin.listen"));
}

TEST(Security, ReloadModelIsConfinedAndNeverBlocks) {
  const std::string dir = MakeDir("confined");
  const std::string models = dir + "/models";
  std::filesystem::create_directories(models + "/subdir");
  std::filesystem::copy_file(QSIG_SOURCE_DIR "/models/demo_mlp.json", models + "/mlp.json");
  std::filesystem::copy_file(QSIG_SOURCE_DIR "/models/demo_mlp.json", dir + "/outside.json");
  ASSERT_EQ(mkfifo((models + "/fifo.json").c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", models + "/zero.json");
  std::filesystem::create_symlink(dir + "/outside.json", models + "/escape.json");
  std::filesystem::create_symlink(models + "/mlp.json", models + "/inside_link.json");
  WriteFile(models + "/big.json", "{" + std::string(200 * 1024, ' ') + "}");
  WriteFile(models + "/garbled.json", "{\"SECRETCONTENT123\" 5, \"more\": [1, 2");
  Server server("confined", {"admin.model_dir=" + models, "admin.max_model_bytes=131072"});
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  server.WaitCalibrated();
  auto admin = v1::AdminService::NewStub(Channel(server.admin_port()));

  std::string first_message;
  for (const std::string& path : std::vector<std::string>{
           "fifo.json", "zero.json", "/dev/zero", "subdir", "escape.json", "../outside.json",
           dir + "/outside.json", "big.json", "missing.json"}) {
    SCOPED_TRACE(path);
    // Refused within a second: a one-second deadline that a blocked handler would miss.
    const grpc::Status st = Reload(*admin, "mlp", path, "", std::chrono::seconds(1));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
    // One answer for every kind of refusal, naming only what was asked for.
    std::string message = st.error_message();
    const size_t at = message.find(path);
    ASSERT_NE(at, std::string::npos) << message;
    message.erase(at, path.size());
    if (first_message.empty()) first_message = message;
    EXPECT_EQ(message, first_message);
  }
  const grpc::Status garbled = Reload(*admin, "mlp", "garbled.json");
  EXPECT_EQ(garbled.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(garbled.error_message(), HasSubstr("garbled.json"));
  EXPECT_THAT(garbled.error_message(), Not(HasSubstr("SECRETCONTENT")));
  EXPECT_THAT(garbled.error_message(), Not(HasSubstr(models))) << "no server paths";

  // A symlink that stays inside the directory, and a relative path, are fine.
  EXPECT_TRUE(Reload(*admin, "mlp", "inside_link.json").ok());
  EXPECT_TRUE(Reload(*admin, "mlp", "mlp.json").ok());

  // Nothing is stuck: a recalibration completes, and so does SIGTERM.
  server.WaitCalibrated();
  const grpc::Status rc = Recalibrate(*admin);
  EXPECT_NE(rc.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(rc.error_code(), grpc::StatusCode::UNAVAILABLE) << rc.error_message();
  EXPECT_EQ(server.child().Terminate(10000), 0) << server.Log();
}

TEST(Security, HalfOpenConnectionsDoNotStopMetrics) {
  Server server("metrics", {});
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  // Two clients connect and never send a complete request.
  std::vector<int> fds;
  for (int i = 0; i < 2; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(server.metrics_port()));
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    if (i == 1) send(fd, "GET /met", 8, 0);
    fds.push_back(fd);
  }
  for (int i = 0; i < 5; ++i) {
    int code = 0;
    const std::string body = HttpGet(server.metrics_port(), "/metrics", &code, 1000);
    EXPECT_EQ(code, 200) << "scrape " << i;
    EXPECT_THAT(body, HasSubstr("qsig_admin_denied_total"));
  }
  for (int fd : fds) close(fd);
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();
}

TEST(Security, PredictFlagsClippedInt8Inputs) {
  Server server("predict", {});
  ASSERT_TRUE(server.WaitStarted()) << server.Log();
  ASSERT_GE(server.WaitCalibrated()["qsig_model_version{model=\"mlp\"}"], 1) << server.Log();
  auto stub = v1::SignalService::NewStub(Channel(server.grpc_port()));
  // An in-distribution vector (spread ~2-3 bps, small returns and imbalances), with feature 0
  // replaced by `v` when given.
  auto predict = [&](std::optional<float> v) {
    grpc::ClientContext ctx;
    v1::PredictRequest req;
    req.set_model("mlp");
    for (float f : {0.1f, -0.2f, 0.3f, 0.75f, 0.2f, -0.1f, 0.2f, 0.05f}) req.add_features(f);
    if (v) req.set_features(0, *v);
    v1::PredictResponse resp;
    EXPECT_TRUE(stub->Predict(&ctx, req, &resp).ok());
    return resp.flags();
  };
  constexpr uint32_t kClipped = v1::FLAG_INPUT_CLIPPED;
  static_assert(kClipped == 128);
  EXPECT_EQ(predict(std::nullopt) & kClipped, 0u);
  EXPECT_EQ(predict(3e38f) & kClipped, kClipped);
  EXPECT_EQ(predict(-3e38f) & kClipped, kClipped);
  EXPECT_EQ(server.child().Terminate(), 0) << server.Log();
}

TEST(Security, DuplicateYamlKeyExitsTwoNamingIt) {
  const std::string dir = MakeDir("yaml");
  WriteFile(dir + "/dup.yaml",
            "grpc:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\ngrpc:\n"
            "  listen: 0.0.0.0:0\n");
  Child c({QSIG_BINARY, "serve", "--config", dir + "/dup.yaml"}, dir + "/serve.log");
  EXPECT_EQ(c.Wait(10000), 2);
  EXPECT_THAT(c.Log(), HasSubstr("grpc: duplicate key"));
}

}  // namespace
}  // namespace qsig::testing
