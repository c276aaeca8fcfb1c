// WriteFeatureFile (feeds' labelled rows in models/io's format): header, row shape, and labels
// that match the mids they are defined by; the binary file read back with models/io's reader.
#include "qsig/models/io/feature_file.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "qsig/feeds/simulator.h"
#include "qsig/server/feature_file.h"

namespace qsig::server {
namespace {

std::vector<std::string> Split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  return out;
}

TEST(FeedFileTest, WritesHeaderRowsAndForwardLabels) {
  FeatureFileOptions o;
  o.source.messages = 60'000;
  o.source.horizon = 20;
  o.source.feed.max_orders = 1 << 16;
  o.output_csv = ::testing::TempDir() + "/qsig_feeds_features.csv";
  ASSERT_TRUE(WriteFeatureFile(o).ok());

  std::ifstream in(o.output_csv);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line,
            "locate,symbol,msg_seq,exchange_ts_ns,mid,ret_1,ret_10,ret_50,spread_bps,"
            "imbalance_l1,imbalance_l5,trade_flow,microprice_dev_bps,label");

  struct Row {
    double mid, label;
  };
  std::map<int, std::vector<Row>> by_locate;
  uint64_t last_seq = 0;
  size_t rows = 0;
  while (std::getline(in, line)) {
    const auto cells = Split(line);
    ASSERT_EQ(cells.size(), 14u) << line;
    const int locate = std::stoi(cells[0]);
    ASSERT_GE(locate, 1);
    ASSERT_LE(locate, 4);
    EXPECT_EQ(cells[1], feeds::SimulatorOptions().instruments[static_cast<size_t>(locate - 1)]);
    const uint64_t seq = std::stoull(cells[2]);
    EXPECT_GT(seq, last_seq) << "rows are in feed order";
    last_seq = seq;
    const double label = std::stod(cells[13]);
    ASSERT_TRUE(std::isfinite(label));
    EXPECT_LT(std::fabs(label), 500.0) << "a 20-update move of 5% is not sensible";
    by_locate[locate].push_back({std::stod(cells[4]), label});
    ++rows;
  }
  EXPECT_GT(rows, 10'000u);
  // Label = 1e4 * (mid `horizon` updates later / mid - 1). Rows are complete per instrument up
  // to the last `horizon`, so row i's label is defined by row i + horizon when it exists.
  size_t checked = 0, nonzero = 0;
  for (const auto& [locate, v] : by_locate) {
    for (size_t i = 0; i + 20 < v.size(); ++i) {
      const double expected = 1e4 * (v[i + 20].mid / v[i].mid - 1.0);
      ASSERT_NEAR(v[i].label, expected, 1e-3 + 1e-5 * std::fabs(expected)) << "row " << i;
      ++checked;
      nonzero += v[i].label != 0.0;
    }
  }
  EXPECT_GT(checked, 10'000u);
  EXPECT_GT(nonzero, checked / 4);
}

TEST(FeedFileTest, BadPathIsAnErrorNamingThePath) {
  FeatureFileOptions o;
  o.source.messages = 1000;
  o.output_csv = "/nonexistent-dir/qsig/features.csv";
  const absl::Status s = WriteFeatureFile(o);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("/nonexistent-dir/qsig/features.csv"), std::string::npos);
  o.output_csv.clear();
  EXPECT_FALSE(WriteFeatureFile(o).ok());
}

}  // namespace
}  // namespace qsig::server

namespace qsig::server {
namespace {

TEST(FeedFileTest, BinaryFileMatchesCsvAndCarriesNamesFlagsAndSymbols) {
  const std::string base = ::testing::TempDir() + "/qsig_features_bin";
  FeatureFileOptions o;
  o.source.messages = 20'000;
  o.source.horizon = 5;
  o.output_csv = base + ".csv";
  o.output_binary = base + ".bin";
  o.source.feed.max_instruments = 8;
  o.source.feed.max_orders = 1 << 16;
  o.source.feed.features =
      *feeds::ParseFeatureSpecs("ret(horizon=10), imbalance(levels=3), realized_vol");
  ASSERT_TRUE(WriteFeatureFile(o).ok());
  auto bin = models::io::ReadFeatureBinary(o.output_binary);
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->feature_names,
            (std::vector<std::string>{"ret_10", "imbalance_l3", "realized_vol_50"}));
  EXPECT_EQ(bin->horizon, 5);
  ASSERT_EQ(bin->symbols.size(), 4u);
  EXPECT_EQ(bin->symbols[0], (std::pair<uint16_t, std::string>{1, "AAPL"}));

  std::ifstream csv(o.output_csv);
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line,
            "locate,symbol,msg_seq,exchange_ts_ns,mid,ret_10,imbalance_l3,realized_vol_50,label");
  size_t n = 0;
  while (std::getline(csv, line)) {
    ASSERT_LT(n, bin->rows());
    const size_t r = n++;
    const float* values = bin->values.data() + r * bin->feature_names.size();
    char expect[512];
    std::snprintf(expect, sizeof expect, "%u,%s,%llu,%lld,%.4f,%.7g,%.7g,%.7g,%.6g",
                  static_cast<unsigned>(bin->locate[r]),
                  bin->symbols[bin->locate[r] - 1].second.c_str(),
                  static_cast<unsigned long long>(bin->msg_seq[r]),
                  static_cast<long long>(bin->exchange_ts_ns[r]), bin->mid[r], values[0], values[1],
                  values[2], static_cast<double>(bin->labels[r]));
    // The CSV label is printed from the double; the binary stores a float: compare the rest.
    const std::string want(expect);
    EXPECT_EQ(line.substr(0, line.rfind(',')), want.substr(0, want.rfind(','))) << n;
  }
  EXPECT_EQ(n, bin->rows());
  EXPECT_GT(n, 10'000u);
  std::remove(o.output_csv.c_str());
  std::remove(o.output_binary.c_str());
}

TEST(FeedFileTest, NeedsAnOutputAndAValidFeatureSet) {
  FeatureFileOptions o;
  o.output_csv.clear();
  EXPECT_FALSE(WriteFeatureFile(o).ok());
  o.output_csv = ::testing::TempDir() + "/qsig_never.csv";
  o.source.feed.features = {{"bogus"}};
  auto st = WriteFeatureFile(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("bogus"), std::string::npos);
  EXPECT_FALSE(models::io::ReadFeatureBinary("/nonexistent.bin").ok());
}

}  // namespace
}  // namespace qsig::server
