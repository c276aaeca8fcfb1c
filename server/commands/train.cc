// `qsig train` (run by qsig-torch): trains an MLP / LSTM / GRU on a feature CSV with LibTorch.
#include "qsig/models/train/train.h"

#include <memory>

#include "command.h"
#include "data_flags.h"

namespace qsig::commands {

Command AddTrainCommand(CLI::App& app) {
  auto to = std::make_shared<models::train::TrainOptions>();
  CLI::App* sub = app.add_subcommand("train", "Train a signal model on a feature CSV");
  AddDataFlags(sub, to->data);
  sub->add_option("--arch", to->arch, "mlp, lstm or gru")->capture_default_str();
  sub->add_option("-o,--output", to->output_path, "Model to write (JSON)")->required();
  sub->add_option("--report", to->report_json, "Report JSON");
  sub->add_option("--name", to->name, "Model name");
  sub->add_option("--hidden", to->hidden, "Hidden units (default 32 MLP, 16 recurrent)");
  sub->add_option("--layers", to->layers, "Hidden / recurrent layers (default 2 MLP, 1)");
  sub->add_option("--window", to->window, "Timesteps of a recurrent model")->capture_default_str();
  sub->add_option("--epochs", to->epochs)->capture_default_str();
  sub->add_option("--lr", to->lr, "Adam learning rate")->capture_default_str();
  return {sub, [to] {
            auto r = models::train::RunTrain(*to);
            return r.ok() ? 0 : Fail("qsig-torch", "train", r.status());
          }};
}

}  // namespace qsig::commands
