// The training-data flags `qsig train` and `qsig qat` share.
#pragma once

#include <CLI/CLI.hpp>

#include "qsig/models/train/train.h"
#include "table_flags.h"

namespace qsig::commands {

inline void AddDataFlags(CLI::App* sub, models::train::DataOptions& d) {
  sub->add_option("--input", d.input_csv, kFeatureTableHelp)->required();
  AddTableFlags(sub, d.table);
  sub->add_option("--val-fraction", d.val_fraction, "Last fraction of rows held out")
      ->capture_default_str();
  sub->add_option("--max-train", d.max_train, "Training samples (random subset)")
      ->capture_default_str();
  sub->add_option("--max-val", d.max_val, "Validation samples (even subset)")
      ->capture_default_str();
  sub->add_option("--label-clip", d.label_clip_quantile, "Clip labels to [q, 1-q] quantiles")
      ->capture_default_str();
  sub->add_option("--batch", d.batch, "Minibatch size")->capture_default_str();
  sub->add_option("--seed", d.seed, "Random seed")->capture_default_str();
  sub->add_option("--threads", d.threads, "LibTorch threads")->capture_default_str();
}

}  // namespace qsig::commands
