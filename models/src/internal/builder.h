// Builds a Runtime from a spec and a per-matmul quantization plan (MakeFp32Model, INT8
// calibration, mixed precision and sensitivity analysis all go through it).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/runtime.h"
#include "qsig/models/model.h"
#include "qsig/quant/quantize.h"

namespace qsig::models::internal {

struct OpPlan {
  bool int8 = false;
  InputQuant in;  // when int8
};

// ops: indexed by operation id (RNN layer l: ih = 2l, hh = 2l + 1; head layer k: 2 * n_rnn + k);
// missing entries are FP32. c_step: per RNN layer (0: fp32 cell state). w_max: the INT8
// weights' range [-w_max, w_max], quant::kS8Max or quant::kS8ReduceRangeMax (reduce_range).
struct QuantPlan {
  std::vector<OpPlan> ops;
  std::vector<float> c_step;
  int w_max = quant::kS8Max;
};

absl::StatusOr<std::unique_ptr<Runtime>> BuildRuntime(std::shared_ptr<const ModelSpec> spec,
                                                      const QuantPlan& plan);

}  // namespace qsig::models::internal
