// `qsig qat` (run by qsig-torch): quantization-aware fine-tuning; reports PTQ vs QAT.
#include <memory>

#include "command.h"
#include "data_flags.h"
#include "qsig/models/train/train.h"

namespace qsig::commands {

Command AddQatCommand(CLI::App& app) {
  auto qo = std::make_shared<models::train::QatOptions>();
  CLI::App* sub = app.add_subcommand("qat", "Quantization-aware fine-tuning; reports PTQ vs QAT");
  AddDataFlags(sub, qo->data);
  sub->add_option("--model", qo->model_path, "Trained model (.json, .onnx, .pt, .qsig)")
      ->required();
  sub->add_option("-o,--output", qo->output_path, "Fine-tuned model to write (JSON)")->required();
  sub->add_option("--report", qo->report_json, "Report JSON");
  sub->add_option("--epochs", qo->epochs)->capture_default_str();
  sub->add_option("--freeze-observers-after", qo->freeze_observers_after,
                  "Activation observers stop updating after this many epochs")
      ->capture_default_str();
  sub->add_option("--lr", qo->lr, "Adam learning rate")->capture_default_str();
  sub->add_option("--method", qo->method, "Activation ranges of the PTQ runs")
      ->capture_default_str();
  sub->add_option("--percentile", qo->percentile)->capture_default_str();
  return {sub, [qo] {
            auto r = models::train::RunQat(*qo);
            return r.ok() ? 0 : Fail("qsig-torch", "qat", r.status());
          }};
}

}  // namespace qsig::commands
