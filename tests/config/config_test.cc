#include "qsig/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace qsig::config {
namespace {

using ::testing::HasSubstr;

TEST(Config, DemoConfigLoadsAndResolvesModelPaths) {
  auto c = LoadConfig(QSIG_SOURCE_DIR "/config/demo.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->feed.source, "sim");
  ASSERT_EQ(c->models.size(), 2u);
  EXPECT_EQ(c->models[0].name, "mlp");
  EXPECT_EQ(c->models[0].path, QSIG_SOURCE_DIR "/models/demo_mlp.json");
  EXPECT_EQ(c->workers.cores, (std::vector<int>{0, 1}));
}

TEST(Config, UnknownKeyIsNamedWithItsPath) {
  auto c = ParseConfig("grpc:\n  listen: 127.0.0.1:1\n  lissen: 1\n", "t.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("t.yaml: grpc.lissen: unknown key"));
}

TEST(Config, UnknownTopLevelSection) {
  auto c = ParseConfig("grcp: {}\n", "t.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grcp: unknown key"));
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  auto c = ParseConfig("workers:\n  count: two\n", "t.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("workers.count: expected an integer, got 'two'"));
  c = ParseConfig("workers:\n  count: 2\n  cores: [0, x]\n", "t.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("workers.cores[1]"));
}

TEST(Config, PipelineModeKeys) {
  auto c = ParseConfig(
      "pipeline: {mode: run_to_completion, shards: 3, cores: [1, 2, 3], "
      "busy_poll: true, idle_spin_us: 20}\nfeed: {kernel_timestamps: false}\n",
      "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pipeline.mode, "run_to_completion");
  EXPECT_EQ(c->pipeline.shards, 3);
  EXPECT_EQ(c->pipeline.cores, (std::vector<int>{1, 2, 3}));
  EXPECT_TRUE(c->pipeline.busy_poll);
  EXPECT_EQ(c->pipeline.idle_spin_us, 20);
  EXPECT_FALSE(c->feed.kernel_timestamps);
  auto d = ParseConfig("console: {status_interval_s: 1}\n", "t.yaml", {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->pipeline.mode, "workers");
  EXPECT_TRUE(d->feed.kernel_timestamps);
}

TEST(Config, BadValuesNameTheirKey) {
  struct Case {
    const char* yaml;
    const char* key;
  } cases[] = {
      {"feed: {source: tcp}", "feed.source"},
      {"grpc: {listen: nowhere}", "grpc.listen"},
      {"metrics: {listen: '127.0.0.1:99999'}", "metrics.listen"},
      {"workers: {count: 2, cores: [0]}", "workers.cores"},
      {"sim: {rate: -5}", "sim.rate"},
      {"sim: {instruments: [TOOLONGSYMBOL]}", "sim.instruments[0]"},
      {"models: [{name: a}]", "models[0].path"},
      {"models: [{name: a, path: x}, {name: a, path: y}]", "models[1].name"},
      {"models: [{name: a, path: x, extra: 1}]", "models[0].extra"},
      {"models: [{name: a, path: x, mode: stateful}]", "models[0].mode"},
      {"shadow: {divergence_threshold: 0}", "shadow.divergence_threshold"},
      {"calibration: {warmup_samples: 100, samples: 50}", "calibration.samples"},
      {"feed: {busy_poll: maybe}", "feed.busy_poll"},
      {"calibration: {method: kl}", "calibration.method"},
      {"calibration: {reduce_range: maybe}", "calibration.reduce_range"},
      {"calibration: {schedule: '25:00'}", "calibration.schedule"},
      {"calibration: {schedule: '17:30 Mars/Olympus_Mons'}", "calibration.schedule"},
      {"calibration: {schedule: '17:30', schedule_tz: Nowhere/City}", "calibration.schedule_tz"},
      {"calibration: {schedule: '5:30'}", "calibration.schedule"},
      {"calibration: {session: '16:00-09:30'}", "calibration.session"},
      {"calibration: {schedule: '12:00', session: '09:30-16:00'}", "calibration.schedule"},
      {"calibration: {holidays_file: /nonexistent/holidays.txt}", "calibration.holidays_file"},
      {"calibration: {missed_grace_s: -1}", "calibration.missed_grace_s"},
      {"sim: {volatility: 0}", "sim.volatility"},
      {"sim: {regimes: [{volatility: 3}]}", "sim.regimes[0].at_s"},
      {"sim: {regimes: [{at_s: 1, vol: 3}]}", "sim.regimes[0].vol"},
      {"sim: {regimes: [{at_s: 1, spread: -2}]}", "sim.regimes[0].spread"},
      {"drift: {saturation_ratio: 2}", "drift.saturation_ratio"},
      {"drift: {windw: 5}", "drift.windw"},
      {"pipeline: {mode: inline}", "pipeline.mode"},
      {"pipeline: {shards: 0}", "pipeline.shards"},
      {"pipeline: {shards: 2, cores: [0]}", "pipeline.cores"},
      {"pipeline: {shards: 1, cores: [-1]}", "pipeline.cores[0]"},
      {"pipeline: {idle_spin_us: -1}", "pipeline.idle_spin_us"},
      {"pipeline: {busy_poll: sometimes}", "pipeline.busy_poll"},
      {"pipeline: {shard: 2}", "pipeline.shard"},
      {"feed: {kernel_timestamps: 2}", "feed.kernel_timestamps"},
      {"feed: {corroboration: {confirm_packets: 0}}", "feed.corroboration.confirm_packets"},
      {"feed: {corroboration: {window_us: 0}}", "feed.corroboration.window_us"},
      {"feed: {max_sequence_jump: 0}", "feed.max_sequence_jump"},
      {"feed: {max_price: 0}", "feed.max_price"},
      {"feed: {max_price: 500000}", "feed.max_price"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.yaml);
    auto c = ParseConfig(tc.yaml, "t.yaml", {});
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(std::string(tc.key) + ":"));
  }
}

TEST(Config, FeedHardeningKeys) {
  auto c = ParseConfig("{}", "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->feed.corroboration.confirm_packets, 3);
  EXPECT_EQ(c->feed.corroboration.window_us, 2'000'000);
  EXPECT_EQ(c->feed.max_sequence_jump, 65536u);
  EXPECT_DOUBLE_EQ(c->feed.max_price, 200000);
  c = ParseConfig(
      "feed:\n  corroboration: {confirm_packets: 5, window_us: 500}\n"
      "  max_sequence_jump: 1000\n  max_price: 5000.5\n",
      "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->feed.corroboration.confirm_packets, 5);
  EXPECT_EQ(c->feed.corroboration.window_us, 500);
  EXPECT_EQ(c->feed.max_sequence_jump, 1000u);
  EXPECT_DOUBLE_EQ(c->feed.max_price, 5000.5);
}

TEST(Config, DuplicateKeyIsAnErrorNamingItsPathAndLine) {
  struct Case {
    const char* yaml;
    const char* message;
  } cases[] = {
      // Top level: the second `grpc` section would silently be ignored.
      {"grpc:\n  listen: 127.0.0.1:1\nworkers: {count: 1}\ngrpc:\n  listen: 0.0.0.0:2\n",
       "t.yaml:4: grpc: duplicate key (first set at line 1)"},
      // Nested.
      {"feed:\n  recovery:\n    gap_timeout_us: 100\n    max_rerequests: 2\n"
       "    gap_timeout_us: 200\n",
       "t.yaml:5: feed.recovery.gap_timeout_us: duplicate key (first set at line 3)"},
      // In a list item's map, flow style.
      {"models:\n  - {name: a, path: x.json}\n  - {name: b, path: y.json, path: z.json}\n",
       "t.yaml:3: models[1].path: duplicate key (first set at line 3)"},
      // In a list item's map, block style.
      {"models:\n  - name: a\n    path: x.json\n    name: b\n",
       "t.yaml:4: models[0].name: duplicate key (first set at line 2)"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.yaml);
    auto c = ParseConfig(tc.yaml, "t.yaml", {});
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(tc.message));
  }
  // Same key names in different maps are fine.
  auto ok =
      ParseConfig("feed: {listen: '127.0.0.1:0'}\ngrpc: {listen: '127.0.0.1:1'}\n", "t.yaml", {});
  EXPECT_TRUE(ok.ok()) << ok.status();
}

TEST(Config, OverridesApplyBeforeValidation) {
  auto c = ParseConfig("grpc: {listen: 127.0.0.1:1}\nmodels: [{name: m, path: /x}]\n", "t.yaml",
                       {"grpc.listen=127.0.0.1:50051", "metrics.listen=127.0.0.1:9464",
                        "workers.cores=[3, 4]", "models.0.path=/y", "sim.rate=1000"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc.listen, "127.0.0.1:50051");
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9464");
  EXPECT_EQ(c->workers.cores, (std::vector<int>{3, 4}));
  EXPECT_EQ(c->models[0].path, "/y");
  EXPECT_DOUBLE_EQ(c->sim.rate, 1000);
}

TEST(Config, GrpcDeliveryKeys) {
  auto c = ParseConfig("{}", "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc.max_streams, 1024);
  EXPECT_EQ(c->grpc.max_instruments_per_subscription, 1024);
  EXPECT_EQ(c->grpc.publisher_spin_us, 0);
  c = ParseConfig(
      "grpc: {max_streams: 5, max_instruments_per_subscription: 3, publisher_spin_us: 50}",
      "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc.max_streams, 5);
  EXPECT_EQ(c->grpc.max_instruments_per_subscription, 3);
  EXPECT_EQ(c->grpc.publisher_spin_us, 50);
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"grpc: {max_streams: 0}", "grpc.max_streams"},
           {"grpc: {max_instruments_per_subscription: 0}", "grpc.max_instruments_per_subscription"},
           {"grpc: {max_instruments_per_subscription: 70000}",
            "grpc.max_instruments_per_subscription"},
           {"grpc: {publisher_spin_us: -1}", "grpc.publisher_spin_us"},
           {"grpc: {subscriber_queue: 8}", "grpc.subscriber_queue"},
           {"grpc: {subscriber_queue: 100000000}", "grpc.subscriber_queue"}}) {
    SCOPED_TRACE(yaml);
    auto bad = ParseConfig(yaml, "t.yaml", {});
    ASSERT_FALSE(bad.ok());
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(key + ":"));
  }
}

TEST(Config, SecurityKeysAndTheirChecks) {
  auto c = ParseConfig("{}", "<t>", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->admin.listen, "127.0.0.1:50052");
  EXPECT_EQ(c->admin.max_model_bytes, 256u << 20);
  EXPECT_EQ(c->calibration.max_worsening, 2);
  EXPECT_EQ(c->calibration.worsening_floor, 0.05);
  EXPECT_TRUE(c->grpc.tls.cert_file.empty());

  // Off loopback, AdminService needs credentials.
  auto bad = [](const std::string& yaml) {
    auto r = ParseConfig(yaml, "t.yaml", {});
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_THAT(bad("admin: {listen: 0.0.0.0:50052}\n"), HasSubstr("t.yaml: admin.listen: 0.0.0.0"));
  EXPECT_THAT(bad("admin: {listen: '10.1.2.3:1'}\n"), HasSubstr("admin.listen"));
  EXPECT_EQ(bad("admin: {listen: '127.0.0.2:1'}\n"), "ok");
  EXPECT_EQ(bad("admin: {listen: 'localhost:1'}\n"), "ok");
  EXPECT_EQ(bad("admin: {listen: 0.0.0.0:1, token_file: /t}\n"), "ok");
  EXPECT_THAT(bad("grpc: {tls: {cert_file: a.pem}}\n"), HasSubstr("grpc.tls.key_file"));
  EXPECT_THAT(bad("grpc: {tls: {client_ca_file: ca.pem}}\n"), HasSubstr("grpc.tls.client_ca_file"));
  EXPECT_THAT(bad("admin: {allowed_identities: [ops]}\n"), HasSubstr("admin.allowed_identities"));
  EXPECT_EQ(bad("grpc: {tls: {cert_file: a, key_file: b, client_ca_file: c}}\n"
                "admin: {listen: 0.0.0.0:1, allowed_identities: [ops]}\n"),
            "ok");
  EXPECT_THAT(bad("calibration: {max_worsening: 0.5}\n"), HasSubstr("calibration.max_worsening"));
  EXPECT_THAT(bad("calibration: {min_samples: 1}\n"), HasSubstr("calibration.min_samples"));
  EXPECT_THAT(bad("calibration: {worsening_floor: -1}\n"),
              HasSubstr("calibration.worsening_floor"));
  EXPECT_THAT(bad("calibration: {worsening_floor: 0.5}\n"),
              HasSubstr("calibration.worsening_floor"));
  EXPECT_THAT(bad("metrics: {threads: 1}\n"), HasSubstr("metrics.threads"));
  EXPECT_THAT(bad("admin: {tokn_file: x}\n"), HasSubstr("admin.tokn_file: unknown key"));

  // Credential files and model_dir are relative to the config file; model_dir defaults to the
  // first model's directory.
  c = LoadConfig(QSIG_SOURCE_DIR "/config/demo.yaml",
                 {"grpc.tls.cert_file=certs/server.pem", "grpc.tls.key_file=/abs/server.key",
                  "admin.token_file=admin.token"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc.tls.cert_file, QSIG_SOURCE_DIR "/config/certs/server.pem");
  EXPECT_EQ(c->grpc.tls.key_file, "/abs/server.key");
  EXPECT_EQ(c->admin.token_file, QSIG_SOURCE_DIR "/config/admin.token");
  EXPECT_EQ(c->admin.model_dir, QSIG_SOURCE_DIR "/models");
}

TEST(Config, ModelPrecomputeKey) {
  auto c = ParseConfig("models: [{name: a, path: /x}, {name: b, path: /y, precompute: false}]\n",
                       "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->models.size(), 2u);
  EXPECT_TRUE(c->models[0].precompute);  // default
  EXPECT_FALSE(c->models[1].precompute);
  auto bad = ParseConfig("models: [{name: a, path: /x, precompute: sometimes}]\n", "t.yaml", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("models[0].precompute"));
}

TEST(Config, BadOverrideIsRejected) {
  auto c = ParseConfig("{}", "t.yaml", {"grpc.port=5"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("grpc.port: unknown key"));
  c = ParseConfig("{}", "t.yaml", {"no-equals-sign"});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("expected key.path=value"));
}

TEST(Config, MissingFileAndInvalidYaml) {
  auto c = LoadConfig("/nonexistent/qsig.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/qsig.yaml"));
  c = ParseConfig("feed: [unclosed", "t.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("invalid YAML"));
}

TEST(Config, ParseHostPort) {
  auto hp = ParseHostPort("127.0.0.1:50051");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->first, "127.0.0.1");
  EXPECT_EQ(hp->second, 50051);
  EXPECT_FALSE(ParseHostPort("127.0.0.1").ok());
  EXPECT_FALSE(ParseHostPort(":80").ok());
  EXPECT_FALSE(ParseHostPort("h:70000").ok());
}

}  // namespace
}  // namespace qsig::config
