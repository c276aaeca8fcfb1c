// Fixture helpers for the models_io tests.
#pragma once

#include <string>
#include <vector>

#include "qsig/models/model.h"

namespace qsig::models::io::testing {

// QSIG_MODELS_IO_TEST_DATA "/" name.
std::string DataPath(const std::string& name);

// <name>.expected.json written by scripts/make_import_fixtures.py.
struct Expected {
  int window = 0;
  int input_size = 0;
  std::vector<float> inputs;  // n x window x input_size, oldest step first.
  std::vector<float> outputs;
};
Expected LoadExpected(const std::string& model);

// Runs MakeFp32Model(spec) over every window of `e` and returns the max |qsig - torch|.
double MaxAbsError(const ModelSpec& spec, const Expected& e);

// A fresh directory under TEST_TMPDIR or /tmp.
std::string TempDir(const std::string& tag);

}  // namespace qsig::models::io::testing
