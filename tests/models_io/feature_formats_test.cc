// Feature tables as researchers keep them (plain CSV, .npy, .npz; qsig/models/io/feature_file.h)
// through the TorchScript fixtures of scripts/make_torchscript_fixtures.py: the windows read from
// each table give PyTorch's outputs within 1e-5, and bad tables name the column and row.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsig/models/io/feature_file.h"
#include "qsig/models/io/feature_table.h"
#include "qsig/models/io/import.h"
#include "test_util.h"

namespace qsig::models::io {
namespace {

using ::testing::AllOf;
using testing::DataPath;
using ::testing::HasSubstr;

constexpr const char* kAsSaved[] = {"mlp",        "mlp_seq",           "lstm_bf",
                                    "lstm_sf_hn", "lstm_stacked",      "lstm_nobias_sf",
                                    "gru_bf",     "gru_stacked_sf_hn", "gru_stacked_bf_hn"};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A float32 .npy of rows x cols.
std::string Npy(size_t rows, size_t cols, const std::vector<float>& v) {
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", rows, ", ", cols, "), }");
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  out += header;
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  return out;
}

class FeatureFormats : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TorchScriptSupported()) GTEST_SKIP() << "built without LibTorch (QSIG_WITH_TORCH=OFF)";
  }
  static ModelSpec Import(const std::string& model, const std::string& how, int window) {
    ImportOptions o;
    o.window = window > 1 ? window : 0;
    auto spec = ImportTorchScript(DataPath(absl::StrCat("ts_", model, ".", how, ".pt")), o);
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : ModelSpec{};
  }
};

TEST_F(FeatureFormats, PlainCsvMatchesPyTorchForEveryVariant) {
  for (const char* model : kAsSaved) {
    const testing::Expected e = testing::LoadExpected(absl::StrCat("ts_", model));
    const size_t n = e.outputs.size();
    for (const char* how : {"traced", "scripted"}) {
      SCOPED_TRACE(absl::StrCat(model, " ", how));
      const ModelSpec spec = Import(model, how, e.window);
      ASSERT_EQ(spec.input_size, e.input_size);
      TableOptions to;
      to.features = spec.feature_names;
      to.instrument_col = "sym";
      to.time_col = "t";
      auto t = ReadFeatureTable(DataPath(absl::StrCat("ts_", model, ".csv")), to);
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->format, "csv");
      std::string note;
      auto cols = MapColumns(spec, *t, &note);
      ASSERT_TRUE(cols.ok()) << cols.status();
      EXPECT_EQ(note, "features matched by name");
      auto shared = std::make_shared<const ModelSpec>(spec);
      std::unique_ptr<Model> fp32 = MakeFp32Model(shared);
      std::vector<float> ws(fp32->workspace_floats());
      // One instrument per sample (S0..S{n-1}, locates in order of appearance); its last row
      // ends the sample's window and carries PyTorch's output as the label.
      const std::vector<size_t> rows = FullWindowRows(*t, e.window, 0, t->rows());
      ASSERT_EQ(rows.size(), n);
      const std::vector<float> x = Windows(*t, *cols, e.window, rows);
      const size_t per = static_cast<size_t>(e.window) * e.input_size;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t sample = t->locate[rows[i]];
        ASSERT_LT(sample, n);
        EXPECT_NEAR(fp32->Run({x.data() + i * per, per}, ws.data()), e.outputs[sample], 1e-5);
        EXPECT_FLOAT_EQ(t->labels[rows[i]], e.outputs[sample]);
      }
    }
  }
}

TEST_F(FeatureFormats, NpyAndNpzMatchPyTorchForEveryVariant) {
  for (const char* model : kAsSaved) {
    const testing::Expected e = testing::LoadExpected(absl::StrCat("ts_", model));
    for (const char* how : {"traced", "scripted"}) {
      const ModelSpec spec = Import(model, how, e.window);
      auto shared = std::make_shared<const ModelSpec>(spec);
      std::unique_ptr<Model> fp32 = MakeFp32Model(shared);
      std::vector<float> ws(fp32->workspace_floats());
      for (const char* ext : {"npy", "npz"}) {
        SCOPED_TRACE(absl::StrCat(model, " ", how, " ", ext));
        auto t = ReadFeatureTable(DataPath(absl::StrCat("ts_", model, ".", ext)), TableOptions{});
        ASSERT_TRUE(t.ok()) << t.status();
        EXPECT_EQ(t->format, ext);
        ASSERT_EQ(t->rows(), static_cast<size_t>(e.window));
        auto cols = MapColumns(spec, *t, nullptr);
        ASSERT_TRUE(cols.ok()) << cols.status();
        std::vector<float> x(static_cast<size_t>(e.window) * e.input_size);
        ASSERT_TRUE(WindowAt(*t, *cols, e.window, t->rows() - 1, x.data()));
        EXPECT_NEAR(fp32->Run(x, ws.data()), e.outputs[0], 1e-5);
        if (std::string(ext) == "npz") {
          EXPECT_FLOAT_EQ(t->labels.back(), e.outputs[0]);
          EXPECT_TRUE(std::isnan(t->labels.front()) || e.window == 1);
        }
      }
    }
  }
}

TEST(FeatureTables, BadTablesNameTheColumnAndRow) {
  const std::string dir = testing::TempDir("feature_formats");
  ModelSpec spec;
  spec.input_size = 3;
  spec.window = 1;
  spec.feature_names = {"a", "b", "c"};
  TableOptions to;
  to.features = spec.feature_names;

  // Missing column: MapColumns names it.
  WriteAll(dir + "/missing.csv", "a,b,x\n1,2,3\n");
  auto t = ReadFeatureTable(dir + "/missing.csv", to);
  ASSERT_TRUE(t.ok()) << t.status();
  auto cols = MapColumns(spec, *t, nullptr);
  ASSERT_FALSE(cols.ok());
  EXPECT_THAT(cols.status().message(), AllOf(HasSubstr("missing column"), HasSubstr("c")));

  // Non-finite values, in a feature column: named with the row.
  WriteAll(dir + "/nan.csv", "a,b,c,label\n1,2,3,0.1\n4,nan,6,\n");
  t = ReadFeatureTable(dir + "/nan.csv", to);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(),
              AllOf(HasSubstr("row 2"), HasSubstr("column 'b'"), HasSubstr("not a finite")));
  WriteAll(dir + "/text.csv", "c,b,a\n1,2,3\n1,x,3\n");
  t = ReadFeatureTable(dir + "/text.csv", to);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("row 2"), HasSubstr("column 'b'")));
  // A ragged row.
  WriteAll(dir + "/ragged.csv", "a,b,c\n1,2,3\n1,2\n");
  t = ReadFeatureTable(dir + "/ragged.csv", to);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("row 2"));
  // An unknown --instrument-col.
  to.instrument_col = "sym";
  t = ReadFeatureTable(dir + "/nan.csv", to);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("--instrument-col column 'sym'"));
  to.instrument_col.clear();

  // .npy: wrong width, then an infinity.
  WriteAll(dir + "/wide.npy", Npy(2, 4, std::vector<float>(8, 1.0f)));
  t = ReadFeatureTable(dir + "/wide.npy", to);
  ASSERT_TRUE(t.ok()) << t.status();
  cols = MapColumns(spec, *t, nullptr);
  ASSERT_FALSE(cols.ok());
  EXPECT_THAT(cols.status().message(),
              AllOf(HasSubstr("wrong width"), HasSubstr("4 columns"), HasSubstr("3 features")));
  std::vector<float> v(6, 1.0f);
  v[5] = INFINITY;
  WriteAll(dir + "/inf.npy", Npy(2, 3, v));
  t = ReadFeatureTable(dir + "/inf.npy", to);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr("row 2"), HasSubstr("column '2'")));
}

TEST(FeatureTables, HostileFilesGetClearErrors) {
  const std::string dir = testing::TempDir("feature_formats_hostile");
  for (const char* name : {"ts_lstm_bf.npy", "ts_lstm_bf.npz", "ts_mlp.npz"}) {
    SCOPED_TRACE(name);
    const std::string bytes = ReadAll(DataPath(name));
    ASSERT_GT(bytes.size(), 100u);
    // Truncated at several points, and with flipped bytes: an error, never a crash.
    for (size_t cut : {size_t{7}, size_t{40}, bytes.size() / 2, bytes.size() - 1}) {
      WriteAll(dir + "/cut", bytes.substr(0, cut));
      EXPECT_FALSE(ReadFeatureTable(dir + "/cut", TableOptions{}).ok()) << cut;
    }
    for (size_t at = 0; at < bytes.size(); at += 7) {
      std::string bad = bytes;
      bad[at] = static_cast<char>(bad[at] ^ 0x5a);
      WriteAll(dir + "/flip", bad);
      (void)ReadFeatureTable(dir + "/flip", TableOptions{});  // Must not crash or hang.
    }
  }
  // An .npy header that claims a huge shape.
  std::string huge = Npy(1, 3, {1, 2, 3});
  const size_t shape = huge.find("(1, 3)");
  huge.replace(shape, 6, "(9999999999999, 3)");
  WriteAll(dir + "/huge.npy", huge);
  auto t = ReadFeatureTable(dir + "/huge.npy", TableOptions{});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("truncated"));
  // A .npy of another dtype.
  std::string ints = Npy(1, 3, {1, 2, 3});
  ints.replace(ints.find("<f4"), 3, "<i4");
  WriteAll(dir + "/ints.npy", ints);
  t = ReadFeatureTable(dir + "/ints.npy", TableOptions{});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("'<i4' is not supported"));
  // A file over the size bound.
  TableOptions small;
  small.max_bytes = 64;
  t = ReadFeatureTable(DataPath("ts_lstm_bf.npz"), small);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("bytes"));
}

TEST(FeatureTables, QsigFeaturesFilesStillRead) {
  const std::string dir = testing::TempDir("feature_formats_qsig");
  WriteAll(dir + "/f.csv",
           "locate,symbol,msg_seq,exchange_ts_ns,mid,a,b,c,label\n1,AA,1,10,1.5,1,2,3,0.5\n");
  auto t = ReadFeatureTable(dir + "/f.csv", TableOptions{});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->format, "features csv");
  EXPECT_EQ(t->feature_names, (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace qsig::models::io
