// The state directory's pieces: the crash-safe writer, the history's JSON round trip and its
// bounds, artifact keeping and pruning, and fast restores from a recorded INT8 recipe.
#include "state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include "model_history.h"
#include "model_registry.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/model.h"

namespace qsig::server {
namespace {

std::string FreshDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "qsig_state_" + name + "_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

HistoryEntry Entry(uint64_t v, const std::string& reason) {
  HistoryEntry e;
  e.version = v;
  e.reason = reason;
  e.installed_unix_ns = 1'700'000'000'000'000'000 + static_cast<int64_t>(v);
  e.precision = "int8";
  e.source_sha256 = "ab";
  e.artifact_sha256 = "cd";
  e.calibration_method = "percentile";
  e.samples = 1600;
  e.samples_first_unix_ns = 5;
  e.samples_last_unix_ns = 9;
  e.relative_rmse_vs_fp32 = 0.0123456789012345;
  e.relative_rmse_vs_incumbent = std::numeric_limits<double>::infinity();  // Stored as -1.
  e.isa = "avx2";
  e.rollback_of = v > 1 ? v - 1 : 0;
  e.artifact_file = "v" + std::to_string(v) + ".qsig";
  e.has_recipe = true;
  e.recipe.reduce_range = true;
  e.recipe.precision = "mixed";
  e.recipe.description.layers = {models::Precision::kInt8S16, models::Precision::kFp32};
  models::QuantizedInput q;
  q.tensor = "lstm[0].x";
  q.int8 = true;
  q.s16 = true;
  q.scale = {1.0f / 3.0f, 1e-7f};
  q.zero_point = {0, 17};
  e.recipe.description.inputs = {q, models::QuantizedInput{}};
  e.recipe.description.cell_step = {0.0f, 3.0e-5f};
  return e;
}

TEST(WriteFileAtomic, ReplacesTheFileWholeAndLeavesNoTemporary) {
  const std::string dir = FreshDir("atomic");
  const std::string path = dir + "/f.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string(100000, 'x')).ok());
  auto read = ReadWholeFile(path, 1 << 20);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, std::string(100000, 'x'));
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(f.path().filename(), "f.json");
  }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(ReadWholeFile(path, 10).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadWholeFile(dir + "/none", 10).status().code(), absl::StatusCode::kNotFound);
}

TEST(WriteFileAtomic, FailsCleanlyWhereItCannotWrite) {
  const absl::Status st = WriteFileAtomic("/nonexistent_dir_qsig/x/state.json", "x");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent_dir_qsig/x/state.json"), std::string::npos);
}

TEST(ModelHistory, RoundTripsEveryField) {
  ModelState s;
  s.model = "lstm";
  s.next_version = 8;
  s.current_version = 7;
  s.fallback = true;
  s.config_sha256 = "ff";
  s.history = {Entry(6, "warmup"), Entry(7, "fallback")};
  s.has_baseline = true;
  s.baseline.mean = {0.1, -2.5};
  s.baseline.std = {1e-12, 3.25};
  s.baseline.lo = {-1.5f, 0.0f};
  s.baseline.hi = {1.5f, 7.0f};
  auto back = ParseModelState(SerializeModelState(s), "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model, "lstm");
  EXPECT_EQ(back->next_version, 8u);
  EXPECT_EQ(back->current_version, 7u);
  EXPECT_TRUE(back->fallback);
  EXPECT_EQ(back->config_sha256, "ff");
  ASSERT_EQ(back->history.size(), 2u);
  const HistoryEntry& e = back->history[1];
  const HistoryEntry want = Entry(7, "fallback");
  EXPECT_EQ(e.version, 7u);
  EXPECT_EQ(e.reason, "fallback");
  EXPECT_EQ(e.installed_unix_ns, want.installed_unix_ns);
  EXPECT_EQ(e.relative_rmse_vs_fp32, want.relative_rmse_vs_fp32);  // Exact.
  EXPECT_EQ(e.relative_rmse_vs_incumbent, -1.0);
  EXPECT_EQ(e.rollback_of, 6u);
  EXPECT_EQ(e.artifact_file, "v7.qsig");
  ASSERT_TRUE(e.has_recipe);
  EXPECT_TRUE(e.recipe.reduce_range);
  EXPECT_EQ(e.recipe.precision, "mixed");
  EXPECT_EQ(e.recipe.description.layers, want.recipe.description.layers);
  ASSERT_EQ(e.recipe.description.inputs.size(), 2u);
  EXPECT_EQ(e.recipe.description.inputs[0].scale, want.recipe.description.inputs[0].scale);
  EXPECT_EQ(e.recipe.description.inputs[0].zero_point, (std::vector<int32_t>{0, 17}));
  EXPECT_TRUE(e.recipe.description.inputs[0].s16);
  EXPECT_FALSE(e.recipe.description.inputs[1].int8);
  EXPECT_EQ(e.recipe.description.cell_step, want.recipe.description.cell_step);
  EXPECT_EQ(back->baseline.mean, s.baseline.mean);
  EXPECT_EQ(back->baseline.std, s.baseline.std);
  EXPECT_EQ(back->baseline.hi, s.baseline.hi);
}

TEST(ModelHistory, RefusesDamagedOrHostileFiles) {
  EXPECT_FALSE(ParseModelState("{", "f").ok());
  EXPECT_FALSE(ParseModelState("[]", "f").ok());
  ModelState s;
  s.model = "m";
  s.history = {Entry(1, "warmup")};
  s.next_version = 2;
  s.current_version = 1;
  std::string text = SerializeModelState(s);
  ASSERT_TRUE(ParseModelState(text, "f").ok());
  // A path in artifact_file would read outside the model's folder.
  std::string evil = text;
  evil.replace(evil.find("v1.qsig"), 7, "../../etc/passwd");
  auto r = ParseModelState(evil, "f");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("plain file name"), std::string::npos);
  // A current version at or past the counter would reuse a version number.
  s.next_version = 1;
  EXPECT_FALSE(ParseModelState(SerializeModelState(s), "f").ok());
}

SampleSnapshot Samples(size_t count, int window, int n_features) {
  SampleSnapshot s;
  s.window = window;
  s.n_features = n_features;
  std::mt19937 rng(7);
  std::normal_distribution<float> x;
  for (size_t i = 0; i < count; ++i) {
    s.arrival_unix_ns.push_back(1'700'000'000'000'000'000 + static_cast<int64_t>(i) * 1000);
    for (int k = 0; k < window * n_features; ++k) s.windows.push_back(x(rng));
  }
  s.seen = 3 * count;
  return s;
}

TEST(SampleFile, RoundTripsThroughTheStateFolder) {
  const std::string dir = FreshDir("samples");
  auto store = StateStore::Open(dir, {"lstm"}, 5);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(absl::IsNotFound((*store)->LoadSamples(0, 4, 3).status()));
  const SampleSnapshot s = Samples(100, 4, 3);
  ASSERT_TRUE((*store)->SaveSamples(0, s).ok());
  auto back = (*store)->LoadSamples(0, 4, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->arrival_unix_ns, s.arrival_unix_ns);
  EXPECT_EQ(back->windows, s.windows);
  EXPECT_EQ(back->seen, 300u);
  // Another model shape: refused by name, not misread.
  auto other = (*store)->LoadSamples(0, 8, 3);
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(std::string(other.status().message()), ::testing::HasSubstr("4 x 3"));
  // An empty store writes an empty, valid file.
  ASSERT_TRUE((*store)->SaveSamples(0, Samples(0, 4, 3)).ok());
  EXPECT_EQ((*store)->LoadSamples(0, 4, 3)->count(), 0u);
  // No temporary file is left behind.
  for (const auto& f : std::filesystem::directory_iterator(dir + "/lstm")) {
    EXPECT_EQ(f.path().filename().string().find(".tmp"), std::string::npos);
  }
}

TEST(SampleFile, RefusesDamagedOrHostileFiles) {
  const std::string good = EncodeSamples(Samples(10, 2, 3));
  ASSERT_TRUE(DecodeSamples(good, 2, 3).ok());
  for (size_t at : {size_t{0}, size_t{9}, size_t{30}, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[at] ^= 0x5a;
    EXPECT_FALSE(DecodeSamples(bad, 2, 3).ok()) << "byte " << at;
  }
  EXPECT_FALSE(DecodeSamples(good.substr(0, good.size() - 9), 2, 3).ok());
  EXPECT_FALSE(DecodeSamples("", 2, 3).ok());
  EXPECT_FALSE(DecodeSamples(good + "x", 2, 3).ok());
  // A count above the bound, or a count that claims more than the file holds, with a valid hash.
  SampleSnapshot big = Samples(1, 1, 1);
  big.arrival_unix_ns.resize(kMaxStoredSampleWindows + 1, 1);
  big.windows.resize(kMaxStoredSampleWindows + 1, 0.5f);
  EXPECT_FALSE(DecodeSamples(EncodeSamples(big), 1, 1).ok());
  SampleSnapshot lying = Samples(3, 1, 1);
  lying.windows.pop_back();
  EXPECT_FALSE(DecodeSamples(EncodeSamples(lying), 1, 1).ok());
  SampleSnapshot few = Samples(3, 1, 1);
  few.seen = 2;  // A sample larger than what it stands for.
  EXPECT_FALSE(DecodeSamples(EncodeSamples(few), 1, 1).ok());
  // Non-finite values never reach a calibration.
  SampleSnapshot nan = Samples(3, 1, 2);
  nan.windows[4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(DecodeSamples(EncodeSamples(nan), 1, 2).ok());
  // A file larger than any valid one is not read past the bound.
  const std::string dir = FreshDir("samples_big");
  auto store = StateStore::Open(dir, {"m"}, 5);
  ASSERT_TRUE(store.ok());
  {
    std::ofstream f(dir + "/m/samples.bin", std::ios::binary);
    f << std::string(1 << 20, 'Q');
  }
  EXPECT_FALSE((*store)->LoadSamples(0, 1, 1).ok());
}

TEST(StateStore, PersistsBoundedHistoryAndPrunesArtifacts) {
  const std::string dir = FreshDir("store");
  {
    auto store = StateStore::Open(dir, {"lstm", "we/ird"}, 3);
    ASSERT_TRUE(store.ok()) << store.status();
    for (uint64_t v = 1; v <= 5; ++v) {
      // An artifact file per version, as SaveArtifactBytes writes it.
      auto f = (*store)->SaveArtifactBytes(0, v, "bytes" + std::to_string(v));
      ASSERT_TRUE(f.ok());
      EXPECT_EQ(*f, "v" + std::to_string(v) + ".qsig");
      ASSERT_TRUE((*store)->Record(0, Entry(v, "schedule")).ok());
    }
    const ModelState s = (*store)->Get(0);
    ASSERT_EQ(s.history.size(), 3u);
    EXPECT_EQ(s.history.front().version, 3u);
    EXPECT_EQ(s.current_version, 5u);
    EXPECT_EQ(s.next_version, 6u);
    EXPECT_FALSE(std::filesystem::exists(dir + "/lstm/v2.qsig"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/lstm/v3.qsig"));
    // A name that is not a plain file name gets a folder of its own, hex-encoded.
    EXPECT_TRUE(std::filesystem::is_directory(dir + "/" + SafeFileName("we/ird")));
    EXPECT_EQ(SafeFileName("we/ird").find('/'), std::string::npos);
  }
  // A crash left a temporary file behind: ignored and removed at the next open.
  { std::ofstream(dir + "/lstm/state.json.tmp.999") << "{half"; }
  auto again = StateStore::Open(dir, {"lstm", "we/ird"}, 3);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->load_errors().empty());
  EXPECT_FALSE(std::filesystem::exists(dir + "/lstm/state.json.tmp.999"));
  const ModelState s = (*again)->Get(0);
  EXPECT_EQ(s.current_version, 5u);
  ASSERT_EQ(s.history.size(), 3u);
  EXPECT_EQ(s.history.back().installed_unix_ns, Entry(5, "").installed_unix_ns);
  EXPECT_EQ((*again)->Get(1).current_version, 0u);
  // A damaged state file: that model starts empty, the error is reported.
  { std::ofstream(dir + "/lstm/state.json") << "garbage"; }
  auto damaged = StateStore::Open(dir, {"lstm", "we/ird"}, 3);
  ASSERT_TRUE(damaged.ok());
  EXPECT_EQ((*damaged)->load_errors().size(), 1u);
  EXPECT_EQ((*damaged)->Get(0).current_version, 0u);
}

// A small LSTM and calibration windows (deterministic).
std::shared_ptr<models::ModelSpec> SmallLstm(std::vector<float>* windows) {
  auto spec = std::make_shared<models::ModelSpec>();
  spec->name = "small";
  spec->arch = models::Arch::kLstm;
  spec->input_size = 3;
  spec->window = 8;
  spec->feature_names = {"a", "b", "c"};
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 0.3f);
  models::LstmLayer l;
  l.input_size = 3;
  l.hidden_size = 16;
  l.w_ih.resize(4 * 16 * 3);
  l.w_hh.resize(4 * 16 * 16);
  l.b_ih.resize(4 * 16);
  l.b_hh.resize(4 * 16);
  for (auto* v : {&l.w_ih, &l.w_hh, &l.b_ih, &l.b_hh}) {
    for (float& x : *v) x = n(rng);
  }
  spec->lstm.push_back(l);
  models::LinearLayer head;
  head.in = 16;
  head.out = 1;
  head.weight.resize(16);
  head.bias = {0.1f};
  for (float& x : head.weight) x = n(rng);
  spec->layers.push_back(head);
  std::normal_distribution<float> f(0.0f, 1.0f);
  windows->resize(600 * 8 * 3);
  for (float& x : *windows) x = f(rng);
  return spec;
}

TEST(BuildVerifiedInt8, RestoresFromTheRecipeWithoutCalibratingAndRefusesAWrongOne) {
  std::vector<float> windows;
  auto spec = SmallLstm(&windows);
  models::Int8Options options;
  models::io::ArtifactSource source;
  std::unique_ptr<models::Model> made;
  models::Int8Description described;
  auto artifact = models::io::MakeArtifact(spec, windows, options, source, &made, &described);
  ASSERT_TRUE(artifact.ok()) << artifact.status();
  RuntimeRecipe recipe;
  recipe.description = described;
  recipe.reduce_range = options.reduce_range;
  recipe.precision = made->precision();
  RuntimeRecipe used;
  auto fast = BuildVerifiedInt8(*artifact, &recipe, &used);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_TRUE(models::io::VerifyInt8Model(*artifact, **fast).ok());
  // Bit-identical to the runtime the artifact was made with.
  std::vector<float> ws(made->workspace_floats());
  std::vector<float> ws2((*fast)->workspace_floats());
  for (size_t i = 0; i < 50; ++i) {
    std::span<const float> w(windows.data() + i * 24, 24);
    EXPECT_EQ(made->Run(w, ws.data()), (*fast)->Run(w, ws2.data()));
  }
  // A mis-scaled recipe does not reproduce the reference outputs: the runtime is rebuilt by
  // calibration instead (never served as recorded).
  RuntimeRecipe wrong = recipe;
  for (float& s : wrong.description.inputs[0].scale) s *= 0.01f;
  auto wrong_model =
      models::BuildInt8FromDescription(spec, wrong.description, options, wrong.precision);
  ASSERT_TRUE(wrong_model.ok());
  EXPECT_FALSE(models::io::VerifyInt8Model(*artifact, **wrong_model).ok());
  auto rebuilt = BuildVerifiedInt8(*artifact, &wrong, &used);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_EQ(used.description.inputs[0].scale, recipe.description.inputs[0].scale);
  // A description that does not fit the model is refused.
  RuntimeRecipe short_recipe = recipe;
  short_recipe.description.inputs.pop_back();
  EXPECT_FALSE(
      models::BuildInt8FromDescription(spec, short_recipe.description, options, "int8").ok());
}

}  // namespace
}  // namespace qsig::server
