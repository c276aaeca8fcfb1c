// ImportTorchScript through LibTorch. The only translation unit of qsig that includes LibTorch's
// headers for import (about 45 s to compile): keep it small and keep torch types inside it.
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "internal/import_common.h"
#include "qsig/models/io/import.h"
#include "qsig/models/status_macros.h"

namespace qsig::models::io {
namespace {

constexpr const char* kSupported =
    "supported: nn.LSTM / nn.GRU (forward, without projections, on a padded tensor; traced or "
    "scripted), nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.Sequential "
    "and modules that only hold these (recurrent modules first, then the Linear head)";

// The hyper-parameters of one aten::lstm / aten::gru call of the inlined forward() graph: what
// both traced and scripted modules record (tracing drops the module's num_layers / hidden_size
// attributes, but the call's arguments are graph constants either way).
struct RecurrentCall {
  std::string kind;  // "aten::lstm" or "aten::gru".
  bool has_biases = true;
  int num_layers = 0;
  bool batch_first = false;
};

// Every node of `b` and its sub-blocks (prim::If / prim::Loop bodies), in order.
void CollectNodes(torch::jit::Block* b, std::vector<torch::jit::Node*>& out) {
  for (torch::jit::Node* n : b->nodes()) {
    out.push_back(n);
    for (torch::jit::Block* sub : n->blocks()) CollectNodes(sub, out);
  }
}

// "__torch__.torch.nn.modules.rnn.___torch_mangle_3.LSTM" -> "LSTM"; user classes keep their
// qualified name in messages.
std::string TypeName(const torch::jit::Module& m) {
  const auto name = m.type()->name();
  return name ? name->qualifiedName() : std::string("<unnamed>");
}
std::string ShortName(const std::string& qualified) {
  return qualified.substr(qualified.find_last_of('.') + 1);
}
bool IsTorchNn(const std::string& qualified) {
  return qualified.find("torch.nn.modules.") != std::string::npos;
}

std::vector<float> ToFloats(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

class TorchImporter {
 public:
  TorchImporter(std::string path, const ImportOptions& options)
      : path_(std::move(path)), options_(options) {}

  absl::StatusOr<ModelSpec> Run(const std::string& bytes) {
    torch::jit::Module module;
    try {
      module = torch::jit::load(path_);
    } catch (const std::exception& e) {
      std::string what = e.what();
      what = what.substr(0, what.find('\n'));
      return absl::DataLossError(
          absl::StrCat(path_,
                       ": not a loadable TorchScript file (truncated, corrupted or not saved with "
                       "torch.jit.save): ",
                       what));
    }
    module.eval();
    try {
      QSIG_RETURN_IF_ERROR(ReadGraph(module));
      QSIG_RETURN_IF_ERROR(Walk(module, ""));
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": reading the module tree: ", e.what()));
    }
    if (spec_.layers.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": the model has no nn.Linear; qsig models end in a Linear head; ", kSupported));
    }
    if (spec_.layers.back().out != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": the last nn.Linear has ",
                                                     spec_.layers.back().out,
                                                     " outputs; a qsig model outputs one signal"));
    }
    const bool recurrent = !spec_.lstm.empty() || !spec_.gru.empty();
    spec_.arch = !spec_.lstm.empty() ? Arch::kLstm : !spec_.gru.empty() ? Arch::kGru : Arch::kMlp;
    if (recurrent && options_.window <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_,
                       ": a TorchScript file does not record the input length; pass the window the "
                       "recurrent model reads (ImportOptions::window / --window)"));
    }
    spec_.window = recurrent ? options_.window : 1;
    spec_.input_size =
        recurrent ? (spec_.lstm.empty() ? spec_.gru[0].input_size : spec_.lstm[0].input_size)
                  : spec_.layers[0].in;
    // Normalization is applied by qsig; verify the raw network with mean 0 / std 1 first.
    ImportOptions plain = options_;
    plain.feature_mean.clear();
    plain.feature_std.clear();
    QSIG_RETURN_IF_ERROR(internal::FinishSpec(path_, bytes, plain, spec_));
    QSIG_RETURN_IF_ERROR(Verify(module));
    QSIG_RETURN_IF_ERROR(internal::FinishSpec(path_, bytes, options_, spec_));
    return std::move(spec_);
  }

 private:
  // Reads the recurrent calls of forward() (inlined through every submodule) and refuses the
  // nodes qsig cannot run, naming them.
  absl::Status ReadGraph(torch::jit::Module& module) {
    if (!module.find_method("forward")) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": the module has no forward()"));
    }
    std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph()->copy();
    torch::jit::Inline(*graph);
    std::vector<torch::jit::Node*> nodes;
    CollectNodes(graph->block(), nodes);
    auto node_refusal = [&](torch::jit::Node* n, const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": node ", n->kind().toQualString(),
                                                     " of forward(): ", what, "; ", kSupported));
    };
    for (torch::jit::Node* n : nodes) {
      const std::string kind = n->kind().toQualString();
      if (kind == "aten::_pack_padded_sequence" || kind == "aten::_pad_packed_sequence" ||
          kind == "aten::_pack_sequence") {
        return node_refusal(n,
                            "packed sequences are not supported (pass a padded [batch, "
                            "window, features] tensor)");
      }
      if (kind != "aten::lstm" && kind != "aten::gru") continue;
      const c10::FunctionSchema* schema = n->maybeSchema();
      const std::string overload = schema ? schema->overload_name() : std::string();
      if (overload != "input") {
        return node_refusal(n, absl::StrCat("the '", overload.empty() ? "?" : overload,
                                            "' overload (a packed sequence) is not supported"));
      }
      // (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
      auto constant = [&](size_t i) { return torch::jit::toIValue(n->input(i)); };
      const auto biases = constant(3), layers = constant(4), bidir = constant(7),
                 batch_first = constant(8);
      if (!biases || !biases->isBool() || !layers || !layers->isInt() || !bidir ||
          !bidir->isBool() || !batch_first || !batch_first->isBool()) {
        return node_refusal(n,
                            "has_biases / num_layers / bidirectional / batch_first are not "
                            "constants of the graph");
      }
      if (bidir->toBool()) return node_refusal(n, "bidirectional=True is not supported");
      if (layers->toInt() < 1 || layers->toInt() > 64) {
        return node_refusal(n, absl::StrCat("num_layers=", layers->toInt()));
      }
      RecurrentCall call;
      call.kind = kind;
      call.has_biases = biases->toBool();
      call.num_layers = static_cast<int>(layers->toInt());
      call.batch_first = batch_first->toBool();
      if (!calls_.empty()) {
        return node_refusal(n, "more than one recurrent call (stack layers with num_layers)");
      }
      calls_.push_back(call);
    }
    return absl::OkStatus();
  }

  absl::Status Refuse(const std::string& where, const std::string& qualified,
                      const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": module '",
                                                   where.empty() ? "<top>" : where, "' (",
                                                   qualified, "): ", what, "; ", kSupported));
  }

  absl::Status Walk(const torch::jit::Module& m, const std::string& where) {
    const std::string type = TypeName(m);
    const std::string kind = IsTorchNn(type) ? ShortName(type) : std::string();
    if (kind == "LSTM" || kind == "GRU") return Recurrent(m, where, type, kind == "LSTM");
    if (kind == "Linear") return Linear(m, where, type);
    if (kind == "ReLU" || kind == "Tanh" || kind == "Sigmoid") {
      if (spec_.layers.empty() || !last_was_linear_ ||
          spec_.layers.back().activation != Activation::kNone) {
        return Refuse(where, type, "an activation is supported only right after nn.Linear");
      }
      spec_.layers.back().activation = kind == "ReLU"   ? Activation::kRelu
                                       : kind == "Tanh" ? Activation::kTanh
                                                        : Activation::kSigmoid;
      last_was_linear_ = false;
      return absl::OkStatus();
    }
    if (kind == "Identity" || kind == "Dropout") return absl::OkStatus();
    if (!kind.empty() && kind != "Sequential" && kind != "ModuleList") {
      return Refuse(where, type, "module type is not supported");
    }
    // A container: nn.Sequential, or a user module that only holds children.
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {  // Refuses the first one.
      return Refuse(where, type,
                    absl::StrCat("holds its own parameter '", p.name,
                                 "' (only parameters of supported modules are "
                                 "understood)"));
    }
    for (const auto& c : m.named_children()) {
      QSIG_RETURN_IF_ERROR(
          Walk(c.value, where.empty() ? c.name : absl::StrCat(where, ".", c.name)));
    }
    return absl::OkStatus();
  }

  absl::Status Recurrent(const torch::jit::Module& m, const std::string& where,
                         const std::string& type, bool lstm) {
    if (!spec_.layers.empty()) {
      return Refuse(where, type, "a recurrent module after nn.Linear is not supported");
    }
    if ((lstm && !spec_.gru.empty()) || (!lstm && !spec_.lstm.empty())) {
      return Refuse(where, type, "mixing LSTM and GRU modules is not supported");
    }
    if (!spec_.lstm.empty() || !spec_.gru.empty()) {
      return Refuse(where, type, "only one recurrent module (use num_layers to stack)");
    }
    const std::string call_kind = lstm ? "aten::lstm" : "aten::gru";
    if (calls_.size() != 1 || calls_[0].kind != call_kind) {
      return Refuse(where, type,
                    absl::StrCat("forward() has no ", call_kind,
                                 " call for it (the module must run on a padded tensor)"));
    }
    const RecurrentCall& call = calls_[0];
    for (const auto& p : m.named_parameters(/*recurse=*/false)) {
      if (p.name.find("_reverse") != std::string::npos) {
        return Refuse(where, type, "bidirectional=True is not supported");
      }
      if (p.name.rfind("weight_hr", 0) == 0) {
        return Refuse(where, type, "projections (proj_size != 0) are not supported");
      }
    }
    if (!m.hasattr("weight_ih_l0") || !m.hasattr("weight_hh_l0") ||
        !m.attr("weight_ih_l0").isTensor() || !m.attr("weight_hh_l0").isTensor()) {
      return Refuse(where, type, "parameters weight_ih_l0 / weight_hh_l0 not found");
    }
    const at::Tensor w_ih0 = m.attr("weight_ih_l0").toTensor();
    const at::Tensor w_hh0 = m.attr("weight_hh_l0").toTensor();
    if (w_ih0.dim() != 2 || w_hh0.dim() != 2) {
      return Refuse(where, type, "weight_ih_l0 / weight_hh_l0 are not matrices");
    }
    batch_first_ = call.batch_first;
    const int gates = lstm ? 4 : 3;
    int width = static_cast<int>(w_ih0.size(1));
    const int h = static_cast<int>(w_hh0.size(1));
    if (h <= 0 || w_hh0.size(0) != gates * h || w_ih0.size(0) != gates * h) {
      return Refuse(where, type,
                    absl::StrCat("weight_hh_l0 has shape [", w_hh0.size(0), ", ", w_hh0.size(1),
                                 "], not [", gates, " x hidden, hidden]"));
    }
    for (int l = 0; l < call.num_layers; ++l) {
      auto param = [&](const std::string& name, std::vector<int64_t> shape,
                       bool optional) -> absl::StatusOr<std::vector<float>> {
        const std::string full = absl::StrCat(name, "_l", l);
        if (optional && !call.has_biases) {
          return std::vector<float>(static_cast<size_t>(shape[0]), 0.0f);  // bias=False.
        }
        if (!m.hasattr(full) || !m.attr(full).isTensor()) {
          return Refuse(where, type, absl::StrCat("parameter ", full, " not found"));
        }
        const at::Tensor t = m.attr(full).toTensor();
        if (t.sizes().vec() != shape) {
          return Refuse(where, type, absl::StrCat("parameter ", full, " has an unexpected shape"));
        }
        return ToFloats(t);
      };
      auto fill = [&](auto& ly) -> absl::Status {
        ly.input_size = width;
        ly.hidden_size = h;
        QSIG_ASSIGN_OR_RETURN(ly.w_ih, param("weight_ih", {gates * h, width}, false));
        QSIG_ASSIGN_OR_RETURN(ly.w_hh, param("weight_hh", {gates * h, h}, false));
        QSIG_ASSIGN_OR_RETURN(ly.b_ih, param("bias_ih", {gates * h}, true));
        QSIG_ASSIGN_OR_RETURN(ly.b_hh, param("bias_hh", {gates * h}, true));
        return absl::OkStatus();
      };
      if (lstm) {
        LstmLayer ly;
        QSIG_RETURN_IF_ERROR(fill(ly));
        spec_.lstm.push_back(std::move(ly));
      } else {
        GruLayer ly;
        QSIG_RETURN_IF_ERROR(fill(ly));
        spec_.gru.push_back(std::move(ly));
      }
      width = h;
    }
    last_was_linear_ = false;
    return absl::OkStatus();
  }

  absl::Status Linear(const torch::jit::Module& m, const std::string& where,
                      const std::string& type) {
    const at::Tensor w = m.attr("weight").toTensor();
    if (w.dim() != 2) return Refuse(where, type, "weight is not a matrix");
    LinearLayer l;
    l.out = static_cast<int>(w.size(0));
    l.in = static_cast<int>(w.size(1));
    l.weight = ToFloats(w);
    const c10::IValue b = m.attr("bias");
    l.bias = b.isTensor() ? ToFloats(b.toTensor()) : std::vector<float>(l.out, 0.0f);
    spec_.layers.push_back(std::move(l));
    last_was_linear_ = true;
    return absl::OkStatus();
  }

  // Runs the module and qsig's FP32 runtime on the same random windows.
  absl::Status Verify(torch::jit::Module& module) {
    constexpr int kBatch = 4;
    const int w = spec_.window, f = spec_.input_size;
    std::vector<float> x(static_cast<size_t>(kBatch) * w * f);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (float& v : x) {  // Deterministic values in [-2, 2).
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      v = static_cast<float>(static_cast<double>(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    at::Tensor in = torch::from_blob(x.data(), {kBatch, w, f}, at::kFloat).clone();
    if (spec_.arch == Arch::kMlp) {
      in = in.select(1, w - 1).contiguous();
    } else if (!batch_first_) {
      in = in.transpose(0, 1).contiguous();
    }
    std::vector<float> torch_out;
    try {
      torch::NoGradGuard no_grad;
      c10::IValue y = module.forward({in});
      if (y.isTuple()) y = y.toTupleRef().elements()[0];
      if (!y.isTensor() || y.toTensor().numel() != kBatch) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_,
            ": forward() does not return one value per sample (expected a [batch, 1] or "
            "[batch] tensor)"));
      }
      torch_out = ToFloats(y.toTensor());
    } catch (const std::exception& e) {
      std::string what = e.what();
      what = what.substr(0, what.find('\n'));
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": forward() failed on a [batch, ", w, ", ", f, "] input (", what,
                       "); check ImportOptions::window and the input layout"));
    }
    auto shared = std::make_shared<const ModelSpec>(spec_);
    std::unique_ptr<Model> model = MakeFp32Model(shared);
    std::vector<float> ws(model->workspace_floats());
    const size_t per = static_cast<size_t>(w) * f;
    for (int i = 0; i < kBatch; ++i) {
      const float q = model->Run(std::span<const float>(x.data() + i * per, per), ws.data());
      const float t = torch_out[static_cast<size_t>(i)];
      if (!(std::fabs(q - t) <= 1e-4f * std::max(1.0f, std::fabs(t)))) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_,
            ": the module tree does not describe forward(): for the same input LibTorch "
            "gives ",
            t, " and the imported model ", q,
            " (forward() must run the recurrent modules, then the head on the last step); ",
            kSupported));
      }
    }
    return absl::OkStatus();
  }

  std::string path_;
  ImportOptions options_;
  ModelSpec spec_;
  bool batch_first_ = false;
  bool last_was_linear_ = false;
  std::vector<RecurrentCall> calls_;
};

}  // namespace

absl::StatusOr<ModelSpec> ImportTorchScript(const std::string& path, const ImportOptions& options) {
  QSIG_ASSIGN_OR_RETURN(std::string bytes, internal::ReadFileBytes(path));
  TorchImporter importer(path, options);
  return importer.Run(bytes);
}

bool TorchScriptSupported() noexcept { return true; }

}  // namespace qsig::models::io
