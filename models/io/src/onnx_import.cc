// ImportOnnx: an ONNX graph exported by torch.onnx.export into a ModelSpec.
//
// The graph is walked once in its (topological) node order. Every value is one of
//   - a constant (initializer or Constant node): its data is read when an op needs it;
//   - auxiliary: computed only from constants and shapes (the Shape -> Gather -> Concat ->
//     ConstantOfShape chains the exporter emits for zero initial states); only whether it is
//     all zeros is tracked;
//   - the model's data path ("main"): a single chain from the graph input to the graph output.
//     Each main value carries what its axes mean (batch, time, feature, ...), so Transpose,
//     Squeeze, Slice and Gather can be followed and "take the last time step" recognised.
// Nodes on the data path that are not understood are refused by name.
//
// QDQ models (onnxruntime quantize_static with QuantFormat.QDQ, PyTorch QAT export, qsig export
// --onnx-qdq): a DequantizeLinear of a constant (s8/u8/s16/u16/s32 initializer, or a float
// initializer through QuantizeLinear) is itself a constant, dequantized exactly as ONNX defines
// it, w = (q - zero_point) * scale, per tensor or per channel (any axis), so weights and biases
// reach the FP32 spec as the quantized model holds them. A QuantizeLinear -> DequantizeLinear pair
// on the data path leaves the value unchanged for the FP32 spec and gives its range,
// [(qmin - zero_point) * scale, (qmax - zero_point) * scale], which becomes the input range
// (ModelSpec::input_ranges) of the layer that reads the value.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "internal/import_common.h"
#include "onnx/onnx_pb.h"  // Defines ONNX_API, then includes onnx-ml.pb.h (ONNX_ML).
#include "qsig/models/io/import.h"
#include "qsig/models/status_macros.h"

namespace qsig::models::io {
namespace {

constexpr int kMinOpset = 13;
constexpr int kMaxOpset = 21;  // 18-21 add types to the ops used here (21: int16 QDQ).
constexpr const char* kSupported =
    "supported: LSTM and GRU (forward, zero initial state), Gemm, MatMul + Add (Linear), Relu, "
    "Tanh, Sigmoid, Identity, Dropout, Flatten, Transpose, Squeeze, Slice/Gather of the last time "
    "step, Sub / Div by constants at the input (normalization), and constant/shape ops (Constant, "
    "Shape, Gather, Unsqueeze, Concat, ConstantOfShape, "
    "Expand, Slice, Cast) feeding initial states; QDQ quantization: QuantizeLinear / "
    "DequantizeLinear pairs with constant per-tensor scales on the data path (u8, s8, u16, s16) "
    "and DequantizeLinear of constant weights and biases (per tensor or per channel)";

// What an axis of a main value means.
enum class Axis {
  kIn0,  // Input axis 0 or 1 of a rank-3 input, before a recurrent node says which is time.
  kIn1,
  kBatch,
  kTime,     // The full sequence.
  kLast,     // The time axis cut to the last step (size 1).
  kDir,      // num_directions (size 1).
  kFeature,  // Features / hidden units.
};

// A QuantizeLinear's per-tensor parameters on the data path.
struct ActQuant {
  float scale = 0;
  int64_t zero_point = 0;
  int type = 0;  // onnx::TensorProto::DataType of the quantized value.
  int64_t qmin = 0, qmax = 0;
  std::string node;  // The QuantizeLinear, for messages.
};

struct MainValue {
  std::vector<Axis> axes;
  int features = 0;
  bool last_step = false;  // The time axis was reduced to its last step (or never existed).
  bool quantized = false;  // The integer output of a QuantizeLinear (only a DequantizeLinear
  ActQuant q;              // may read it), with its parameters.
  SourceRange range;       // Set after a QDQ pair: the range the source quantized the value to.
};

// The integer range of a quantized element type; false if the type is not one.
bool IntRange(int type, int64_t* lo, int64_t* hi) {
  switch (type) {
    case onnx::TensorProto::UINT8:
      *lo = 0, *hi = 255;
      return true;
    case onnx::TensorProto::INT8:
      *lo = -128, *hi = 127;
      return true;
    case onnx::TensorProto::UINT16:
      *lo = 0, *hi = 65535;
      return true;
    case onnx::TensorProto::INT16:
      *lo = -32768, *hi = 32767;
      return true;
    case onnx::TensorProto::INT32:
      *lo = std::numeric_limits<int32_t>::min(), *hi = std::numeric_limits<int32_t>::max();
      return true;
    default:
      return false;
  }
}
const char* TypeName(int type) {
  switch (type) {
    case onnx::TensorProto::UINT8:
      return "u8";
    case onnx::TensorProto::INT8:
      return "s8";
    case onnx::TensorProto::UINT16:
      return "u16";
    case onnx::TensorProto::INT16:
      return "s16";
    case onnx::TensorProto::INT32:
      return "s32";
    default:
      return "?";
  }
}

struct Const {
  std::vector<int64_t> dims;
  std::vector<float> f;    // FLOAT tensors.
  std::vector<int64_t> i;  // Integer tensors (INT64, INT32, and the quantized INT8 .. UINT16).
  bool is_float = false;
  int type = 0;  // onnx::TensorProto::DataType.
  size_t size() const { return is_float ? f.size() : i.size(); }
  bool AllZero() const {
    return is_float ? std::all_of(f.begin(), f.end(), [](float v) { return v == 0.0f; })
                    : std::all_of(i.begin(), i.end(), [](int64_t v) { return v == 0; });
  }
};

absl::StatusOr<Const> ReadTensor(const onnx::TensorProto& t, const std::string& where) {
  Const c;
  c.dims.assign(t.dims().begin(), t.dims().end());
  int64_t n = 1;
  for (int64_t d : c.dims) {
    if (d < 0 || d > (int64_t{1} << 31)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": dimension ", d, " out of range"));
    }
    n *= d;
  }
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    return absl::InvalidArgumentError(absl::StrCat(
        where,
        ": weights are stored in an external data file, which is not supported; export "
        "with the weights inside the .onnx file (models under 2 GB do by default)"));
  }
  const std::string& raw = t.raw_data();
  c.type = t.data_type();
  // Small integer types: raw little-endian bytes, or (ONNX's rule) one value per int32_data.
  auto small_ints = [&](auto zero) -> absl::Status {
    using T = decltype(zero);
    if (!raw.empty()) {
      if (raw.size() != static_cast<size_t>(n) * sizeof(T)) {
        return absl::DataLossError(
            absl::StrCat(where, ": raw_data has ", raw.size(), " bytes, expected ", n * sizeof(T)));
      }
      std::vector<T> tmp(static_cast<size_t>(n));
      if (!tmp.empty()) std::memcpy(tmp.data(), raw.data(), raw.size());
      c.i.assign(tmp.begin(), tmp.end());
    } else {
      for (int32_t v : t.int32_data()) c.i.push_back(static_cast<T>(v));
    }
    return absl::OkStatus();
  };
  switch (t.data_type()) {
    case onnx::TensorProto::INT8:
      QSIG_RETURN_IF_ERROR(small_ints(int8_t{0}));
      break;
    case onnx::TensorProto::UINT8:
      QSIG_RETURN_IF_ERROR(small_ints(uint8_t{0}));
      break;
    case onnx::TensorProto::INT16:
      QSIG_RETURN_IF_ERROR(small_ints(int16_t{0}));
      break;
    case onnx::TensorProto::UINT16:
      QSIG_RETURN_IF_ERROR(small_ints(uint16_t{0}));
      break;
    case onnx::TensorProto::FLOAT:
      c.is_float = true;
      if (!raw.empty()) {
        if (raw.size() != static_cast<size_t>(n) * 4) {
          return absl::DataLossError(
              absl::StrCat(where, ": raw_data has ", raw.size(), " bytes, expected ", n * 4));
        }
        c.f.resize(static_cast<size_t>(n));
        std::memcpy(c.f.data(), raw.data(), raw.size());  // Little-endian, as the host.
      } else {
        c.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case onnx::TensorProto::INT64:
      if (!raw.empty()) {
        if (raw.size() != static_cast<size_t>(n) * 8) {
          return absl::DataLossError(
              absl::StrCat(where, ": raw_data has ", raw.size(), " bytes, expected ", n * 8));
        }
        c.i.resize(static_cast<size_t>(n));
        std::memcpy(c.i.data(), raw.data(), raw.size());
      } else {
        c.i.assign(t.int64_data().begin(), t.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
      if (!raw.empty()) {
        if (raw.size() != static_cast<size_t>(n) * 4) {
          return absl::DataLossError(
              absl::StrCat(where, ": raw_data has ", raw.size(), " bytes, expected ", n * 4));
        }
        std::vector<int32_t> tmp(static_cast<size_t>(n));
        std::memcpy(tmp.data(), raw.data(), raw.size());
        c.i.assign(tmp.begin(), tmp.end());
      } else {
        c.i.assign(t.int32_data().begin(), t.int32_data().end());
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor element type ", t.data_type(),
                       " is not supported (float32 weights, int64/int32 indices, and "
                       "int8/uint8/int16/uint16/int32 quantized values; no float16, float8 or "
                       "4-bit types)"));
  }
  if (c.size() != static_cast<size_t>(n)) {
    return absl::DataLossError(absl::StrCat(where, ": holds ", c.size(), " values, dims say ", n));
  }
  if (c.is_float) {
    for (float v : c.f) {
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": holds a non-finite weight"));
      }
    }
  }
  return c;
}

const onnx::AttributeProto* FindAttr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}
int64_t AttrInt(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  const auto* a = FindAttr(n, name);
  return a != nullptr ? a->i() : dflt;
}
float AttrFloat(const onnx::NodeProto& n, const std::string& name, float dflt) {
  const auto* a = FindAttr(n, name);
  return a != nullptr ? a->f() : dflt;
}

class OnnxImporter {
 public:
  OnnxImporter(std::string path, const ImportOptions& options)
      : path_(std::move(path)), options_(options) {}

  absl::StatusOr<ModelSpec> Run(const std::string& bytes) {
    onnx::ModelProto model;
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
        !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::DataLossError(absl::StrCat(
          path_,
          ": not a valid ONNX file (the protobuf does not parse: truncated, corrupted or "
          "not ONNX); re-export it with torch.onnx.export"));
    }
    QSIG_RETURN_IF_ERROR(CheckOpset(model));
    const onnx::GraphProto& g = model.graph();
    if (g.node_size() == 0 || g.output_size() == 0) {
      return absl::DataLossError(
          absl::StrCat(path_, ": the ONNX graph has no nodes or no outputs (truncated file?)"));
    }
    for (const auto& t : g.initializer()) {
      QSIG_ASSIGN_OR_RETURN(Const c,
                            ReadTensor(t, absl::StrCat(path_, ": initializer '", t.name(), "'")));
      consts_[t.name()] = std::move(c);
    }
    QSIG_RETURN_IF_ERROR(ReadInput(g));
    for (int k = 0; k < g.node_size(); ++k) {
      QSIG_RETURN_IF_ERROR(Node(g.node(k), k));
    }
    QSIG_RETURN_IF_ERROR(Finish(g));
    QSIG_RETURN_IF_ERROR(internal::FinishSpec(path_, bytes, options_, spec_));
    return std::move(spec_);
  }

 private:
  absl::Status CheckOpset(const onnx::ModelProto& m) {
    int opset = -1;
    for (const auto& o : m.opset_import()) {
      if (o.domain().empty() || o.domain() == "ai.onnx") opset = static_cast<int>(o.version());
    }
    if (opset < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_,
                       ": the model imports no default-domain opset (not an ONNX model "
                       "from torch.onnx.export?)"));
    }
    if (opset < kMinOpset || opset > kMaxOpset) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": opset ", opset,
                                                     " is not supported; export with opset_version "
                                                     "between ",
                                                     kMinOpset, " and ", kMaxOpset));
    }
    return absl::OkStatus();
  }

  absl::Status ReadInput(const onnx::GraphProto& g) {
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& in : g.input()) {
      if (!consts_.contains(in.name())) inputs.push_back(&in);
    }
    if (inputs.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": the graph has ", inputs.size(),
                       " data inputs; a qsig model takes exactly one (the feature window)"));
    }
    const onnx::ValueInfoProto& in = *inputs[0];
    const auto& tt = in.type().tensor_type();
    if (tt.elem_type() != onnx::TensorProto::FLOAT) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": input '", in.name(), "' is not float32"));
    }
    const int rank = tt.shape().dim_size();
    auto dim = [&](int k) -> int64_t {
      const auto& d = tt.shape().dim(k);
      return d.has_dim_value() ? d.dim_value() : -1;
    };
    MainValue v;
    if (rank == 2) {
      v.axes = {Axis::kIn0, Axis::kFeature};
    } else if (rank == 3) {
      v.axes = {Axis::kIn0, Axis::kIn1, Axis::kFeature};
      input_dims_ = {dim(0), dim(1)};
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": input '", in.name(), "' has rank ", rank,
          "; supported: [batch, features] (MLP) or [batch, time, features] / [time, batch, "
          "features] (recurrent)"));
    }
    const int64_t f = dim(rank - 1);
    if (f <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": input '", in.name(),
                       "' has a dynamic feature axis; export with a fixed "
                       "number of features"));
    }
    v.features = static_cast<int>(f);
    v.last_step = rank == 2;
    spec_.input_size = v.features;
    input_name_ = in.name();
    current_.clear();
    current_[in.name()] = v;
    return absl::OkStatus();
  }

  std::string Where(const onnx::NodeProto& n, int k) const {
    return absl::StrCat(path_, ": node '", n.name().empty() ? absl::StrCat("#", k) : n.name(),
                        "' (op_type ", n.op_type(), ")");
  }
  absl::Status Refuse(const onnx::NodeProto& n, int k, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(n, k), ": ", what, "; ", kSupported));
  }

  absl::StatusOr<const Const*> GetConst(const onnx::NodeProto& n, int k, int input) const {
    if (input >= n.input_size() || n.input(input).empty()) {
      return Refuse(n, k, absl::StrCat("input ", input, " is missing"));
    }
    auto it = consts_.find(n.input(input));
    if (it == consts_.end()) {
      return Refuse(n, k,
                    absl::StrCat("input '", n.input(input),
                                 "' must be a constant (initializer or Constant node)"));
    }
    return &it->second;
  }

  // Input `input` is absent, or a constant / auxiliary value that is all zeros.
  bool AbsentOrZero(const onnx::NodeProto& n, int input) const {
    if (input >= n.input_size() || n.input(input).empty()) return true;
    if (auto it = consts_.find(n.input(input)); it != consts_.end()) return it->second.AllZero();
    if (auto it = aux_zero_.find(n.input(input)); it != aux_zero_.end()) return it->second;
    return false;
  }

  absl::Status Node(const onnx::NodeProto& n, int k) {
    const std::string& op_type = n.op_type();
    if (op_type.starts_with("QLinear") || op_type == "QGemm" || op_type == "MatMulInteger" ||
        op_type == "ConvInteger" || op_type == "MatMulIntegerToFloat" ||
        op_type == "DynamicQuantizeMatMul" || op_type == "DynamicQuantizeLSTM" ||
        op_type == "QAttention") {
      return Refuse(n, k,
                    "quantized operators (the QOperator format: QLinearMatMul, QLinearConv, "
                    "MatMulInteger, ConvInteger, ...) are not supported: use the QDQ format "
                    "(QuantizeLinear / DequantizeLinear around float operators; onnxruntime: "
                    "quantize_static(..., quant_format=QuantFormat.QDQ))");
    }
    if (op_type == "DynamicQuantizeLinear") {
      return Refuse(n, k,
                    "dynamic quantization (scales computed at run time) is not supported: qsig "
                    "needs constant scales; quantize statically in the QDQ format");
    }
    const bool qdq = op_type == "QuantizeLinear" || op_type == "DequantizeLinear";
    if (!n.domain().empty() && n.domain() != "ai.onnx" && !(qdq && n.domain() == "com.microsoft")) {
      return Refuse(n, k, absl::StrCat("operator domain '", n.domain(), "' is not supported"));
    }
    // Classify the inputs.
    int main_inputs = 0;
    int main_index = -1;
    for (int i = 0; i < n.input_size(); ++i) {
      const std::string& name = n.input(i);
      if (name.empty()) continue;
      if (current_.contains(name)) {
        ++main_inputs;
        main_index = i;
      } else if (stale_.contains(name)) {
        return Refuse(n, k,
                      absl::StrCat("reads '", name,
                                   "' from an earlier point of the data "
                                   "path (a branch or skip connection); a qsig model is "
                                   "a single chain"));
      } else if (const auto it = unsupported_.find(name); it != unsupported_.end()) {
        return Refuse(n, k, it->second);
      } else if (!consts_.contains(name) && !aux_zero_.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(n, k), ": reads '", name,
                         "', which no earlier node or initializer produces "
                         "(truncated or malformed file?)"));
      }
    }
    if (main_inputs == 0) return AuxNode(n, k);
    if (n.op_type() == "Shape" || n.op_type() == "Size") {  // Only the shape: auxiliary.
      aux_zero_[n.output(0)] = false;
      return absl::OkStatus();
    }
    if (main_inputs > 1) {
      return Refuse(n, k,
                    "combines two tensors of the data path (a qsig model is a single "
                    "chain)");
    }
    const MainValue in = current_.at(n.input(main_index));
    const std::string& op = n.op_type();
    if (in.quantized && op != "DequantizeLinear") {
      return Refuse(n, k,
                    absl::StrCat("reads the integer output of QuantizeLinear '", in.q.node,
                                 "'; in the QDQ format only a DequantizeLinear may follow it"));
    }
    if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      if (main_index != 0) return Refuse(n, k, "the scale and zero point must be constants");
      return op == "QuantizeLinear" ? QuantizeMain(n, k, in) : DequantizeMain(n, k, in);
    }
    if (op == "LSTM" || op == "GRU") return Recurrent(n, k, main_index, in);
    if (main_index != 0 && op != "Add") {
      return Refuse(n, k, "the data path must be the first input");
    }
    if (op == "Sub" || op == "Div") return Normalize(n, k, in);
    if (op == "Gemm") return Gemm(n, k, in);
    if (op == "MatMul") return MatMul(n, k, in);
    if (op == "Add") return Add(n, k, main_index, in);
    if (op == "Relu" || op == "Tanh" || op == "Sigmoid") return Act(n, k, in);
    if (op == "Identity" || op == "Dropout") {
      if (op == "Dropout" && n.output_size() > 1 && !n.output(1).empty()) {
        return Refuse(n, k, "the Dropout mask output is used");
      }
      return Replace(n.output(0), in);
    }
    if (op == "Flatten") {
      const int64_t axis = AttrInt(n, "axis", 1);
      if (in.axes.size() != 2 || (axis != 1 && axis != -1)) {
        return Refuse(n, k, "Flatten is supported only on [batch, features]");
      }
      return Replace(n.output(0), in);
    }
    if (op == "Transpose") return Transpose(n, k, in);
    if (op == "Squeeze") return Squeeze(n, k, in);
    if (op == "Slice") return Slice(n, k, in);
    if (op == "Gather") return Gather(n, k, in);
    return Refuse(n, k, "operator is not supported on the data path");
  }

  // Scale, zero point and axis of a QuantizeLinear / DequantizeLinear. `x_type`: the element
  // type of the integer operand (DequantizeLinear's input), 0 for QuantizeLinear.
  struct QParams {
    std::vector<float> scale;
    std::vector<int64_t> zero_point;  // One per scale.
    int type = 0;                     // The integer type.
    int64_t qmin = 0, qmax = 0;
    int64_t axis = 1;  // ONNX's default; used when scale has more than one value.
  };
  absl::StatusOr<QParams> ReadQParams(const onnx::NodeProto& n, int k, int x_type) const {
    if (AttrInt(n, "block_size", 0) != 0) {
      return Refuse(n, k,
                    "block quantization (block_size) is not supported; per-tensor or per-channel "
                    "(axis) scales only");
    }
    QParams q;
    for (int input : {1, 2}) {
      if (input >= n.input_size() || n.input(input).empty()) continue;
      if (!consts_.contains(n.input(input))) {
        return Refuse(n, k,
                      absl::StrCat(input == 1 ? "scale '" : "zero point '", n.input(input),
                                   "' is not a constant: only static quantization with constant "
                                   "(initializer) scales and zero points is supported"));
      }
    }
    if (n.input_size() < 2 || n.input(1).empty()) return Refuse(n, k, "the scale is missing");
    const Const& sc = consts_.at(n.input(1));
    if (!sc.is_float || sc.dims.size() > 1 || sc.f.empty()) {
      return Refuse(n, k,
                    sc.dims.size() > 1 ? "a scale of rank > 1 (block quantization) is not "
                                         "supported; per-tensor or per-channel scales only"
                                       : "the scale must be a float32 scalar or 1-D tensor");
    }
    q.scale = sc.f;
    for (float v : q.scale) {
      if (!(v > 0.0f) || !std::isfinite(v)) {
        return Refuse(n, k, absl::StrCat("scale ", v, " is not a finite positive number"));
      }
    }
    if (n.input_size() > 2 && !n.input(2).empty()) {
      const Const& zp = consts_.at(n.input(2));
      if (zp.is_float || zp.size() != q.scale.size()) {
        return Refuse(n, k,
                      absl::StrCat("the zero point must be an integer tensor with as many values "
                                   "as the scale (",
                                   q.scale.size(), ")"));
      }
      q.zero_point = zp.i;
      q.type = zp.type;
    } else {
      q.zero_point.assign(q.scale.size(), 0);
      q.type = x_type != 0 ? x_type : static_cast<int>(AttrInt(n, "output_dtype", 0));
      if (q.type == 0) q.type = onnx::TensorProto::UINT8;  // ONNX's default.
    }
    if (x_type != 0 && q.type != x_type) {
      return Refuse(n, k, "the zero point's type differs from the quantized input's");
    }
    if (!IntRange(q.type, &q.qmin, &q.qmax) ||
        (q.type == onnx::TensorProto::INT32 && x_type == 0)) {
      return Refuse(n, k,
                    absl::StrCat("quantized element type ", q.type,
                                 " is not supported (int8, uint8, int16, uint16; int32 for a "
                                 "dequantized bias)"));
    }
    for (int64_t z : q.zero_point) {
      if (z < q.qmin || z > q.qmax) {
        return Refuse(n, k, absl::StrCat("zero point ", z, " is outside ", TypeName(q.type)));
      }
    }
    q.axis = AttrInt(n, "axis", 1);
    return q;
  }

  // Channel of flat index `idx` along `axis` of `dims` (0 for per-tensor parameters).
  static size_t Channel(const QParams& q, const std::vector<int64_t>& dims, int64_t axis,
                        size_t idx) {
    if (q.scale.size() == 1) return 0;
    size_t inner = 1;
    for (size_t d = static_cast<size_t>(axis) + 1; d < dims.size(); ++d) {
      inner *= static_cast<size_t>(dims[d]);
    }
    return (idx / inner) % static_cast<size_t>(dims[static_cast<size_t>(axis)]);
  }

  // The axis per-channel parameters apply to, checked against the tensor's shape.
  absl::StatusOr<int64_t> ChannelAxis(const onnx::NodeProto& n, int k, const QParams& q,
                                      const std::vector<int64_t>& dims) const {
    if (q.scale.size() == 1) return 0;
    const int64_t rank = static_cast<int64_t>(dims.size());
    const int64_t axis = q.axis < 0 ? q.axis + rank : q.axis;
    if (axis < 0 || axis >= rank ||
        dims[static_cast<size_t>(axis)] != static_cast<int64_t>(q.scale.size())) {
      return Refuse(n, k,
                    absl::StrCat("per-channel scale has ", q.scale.size(), " values, but axis ",
                                 q.axis, " of the tensor does not have that size"));
    }
    return axis;
  }

  // QuantizeLinear / DequantizeLinear of a constant: the result is a constant.
  absl::Status QdqConst(const onnx::NodeProto& n, int k) {
    const bool dq = n.op_type() == "DequantizeLinear";
    if (n.input_size() < 1 || !consts_.contains(n.input(0))) {
      return Refuse(n, k,
                    absl::StrCat("input '", n.input_size() > 0 ? n.input(0) : "",
                                 "' is neither a constant nor the data path (computed "
                                 "quantization is not supported)"));
    }
    const Const& x = consts_.at(n.input(0));
    if (dq == x.is_float) {
      return Refuse(n, k, dq ? "dequantizes a float tensor" : "quantizes a non-float tensor");
    }
    QSIG_ASSIGN_OR_RETURN(QParams q, ReadQParams(n, k, dq ? x.type : 0));
    QSIG_ASSIGN_OR_RETURN(const int64_t axis, ChannelAxis(n, k, q, x.dims));
    Const out;
    out.dims = x.dims;
    if (dq) {
      out.is_float = true;
      out.type = onnx::TensorProto::FLOAT;
      out.f.resize(x.i.size());
      for (size_t i = 0; i < x.i.size(); ++i) {
        const size_t c = Channel(q, x.dims, axis, i);
        out.f[i] = static_cast<float>(x.i[i] - q.zero_point[c]) * q.scale[c];
      }
    } else {
      out.type = q.type;
      out.i.resize(x.f.size());
      for (size_t i = 0; i < x.f.size(); ++i) {
        const size_t c = Channel(q, x.dims, axis, i);
        const double v = std::nearbyint(x.f[i] / q.scale[c]) + static_cast<double>(q.zero_point[c]);
        out.i[i] = static_cast<int64_t>(
            std::clamp(v, static_cast<double>(q.qmin), static_cast<double>(q.qmax)));
      }
    }
    consts_[n.output(0)] = std::move(out);
    return absl::OkStatus();
  }

  // QuantizeLinear on the data path: only a DequantizeLinear may read the result.
  absl::Status QuantizeMain(const onnx::NodeProto& n, int k, const MainValue& in) {
    QSIG_ASSIGN_OR_RETURN(QParams q, ReadQParams(n, k, 0));
    if (q.scale.size() != 1) {
      return Refuse(n, k,
                    "per-channel quantization of an activation is not supported (per-tensor "
                    "activation scales only)");
    }
    MainValue v = in;
    v.quantized = true;
    v.q.scale = q.scale[0];
    v.q.zero_point = q.zero_point[0];
    v.q.type = q.type;
    v.q.qmin = q.qmin;
    v.q.qmax = q.qmax;
    v.q.node = n.name().empty() ? absl::StrCat("#", k) : n.name();
    return Replace(n.output(0), v);
  }

  // DequantizeLinear on the data path: closes a QDQ pair; the value gets the pair's range.
  absl::Status DequantizeMain(const onnx::NodeProto& n, int k, const MainValue& in) {
    if (!in.quantized) return Refuse(n, k, "dequantizes a value that no QuantizeLinear quantized");
    QSIG_ASSIGN_OR_RETURN(QParams q, ReadQParams(n, k, in.q.type));
    if (q.scale.size() != 1 || q.scale[0] != in.q.scale || q.zero_point[0] != in.q.zero_point) {
      return Refuse(n, k,
                    absl::StrCat("dequantizes with another scale or zero point than "
                                 "QuantizeLinear '",
                                 in.q.node, "' quantized with (", in.q.scale, ", ", in.q.zero_point,
                                 "); a QDQ pair must share them"));
    }
    MainValue v = in;
    v.quantized = false;
    const float lo = static_cast<float>(in.q.qmin - in.q.zero_point) * in.q.scale;
    const float hi = static_cast<float>(in.q.qmax - in.q.zero_point) * in.q.scale;
    if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi)) {
      return Refuse(n, k,
                    absl::StrCat("the QDQ pair with QuantizeLinear '", in.q.node,
                                 "' gives the "
                                 "range [",
                                 lo, ", ", hi, "], which is not finite with min < max"));
    }
    v.range = SourceRange{true, lo, hi};
    // onnxruntime drops a Relu between a Linear layer and a QuantizeLinear whose zero point is
    // the type's minimum (the quantization clamps at 0 itself): restore it.
    if (last_was_linear_ && !spec_.layers.empty() &&
        spec_.layers.back().activation == Activation::kNone && in.q.zero_point == in.q.qmin) {
      spec_.layers.back().activation = Activation::kRelu;
      relu_from_qdq_ = true;
      bias_open_ = false;  // The clamp comes after any bias; a later Add would be wrong.
    }
    return Replace(n.output(0), v);
  }

  // Nodes that only see constants and shapes.
  absl::Status AuxNode(const onnx::NodeProto& n, int k) {
    const std::string& op = n.op_type();
    if (op == "QuantizeLinear" || op == "DequantizeLinear") return QdqConst(n, k);
    if (op == "Constant") {
      Const c;
      if (const auto* a = FindAttr(n, "value"); a != nullptr) {
        QSIG_ASSIGN_OR_RETURN(c, ReadTensor(a->t(), Where(n, k)));
      } else if (const auto* a = FindAttr(n, "value_float"); a != nullptr) {
        c.is_float = true;
        c.f = {a->f()};
      } else if (const auto* a = FindAttr(n, "value_floats"); a != nullptr) {
        c.is_float = true;
        c.f.assign(a->floats().begin(), a->floats().end());
        c.dims = {static_cast<int64_t>(c.f.size())};
      } else if (const auto* a = FindAttr(n, "value_int"); a != nullptr) {
        c.i = {a->i()};
      } else if (const auto* a = FindAttr(n, "value_ints"); a != nullptr) {
        c.i.assign(a->ints().begin(), a->ints().end());
        c.dims = {static_cast<int64_t>(c.i.size())};
      } else {
        return Refuse(n, k, "Constant without a supported value attribute");
      }
      consts_[n.output(0)] = std::move(c);
      return absl::OkStatus();
    }
    // Zeros of a computed shape (the exporter's h0 / c0) stay zeros through these ops.
    static const std::set<std::string> kKeepZero = {
        "Slice", "Expand", "Gather", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Tile"};
    bool zero = false;
    if (op == "ConstantOfShape") {
      zero = true;
      if (const auto* a = FindAttr(n, "value"); a != nullptr) {
        QSIG_ASSIGN_OR_RETURN(Const c, ReadTensor(a->t(), Where(n, k)));
        zero = c.AllZero();
      }
    } else if (kKeepZero.contains(op)) {
      zero = AbsentOrZero(n, 0);
    }
    for (const std::string& out : n.output()) {
      if (!out.empty()) aux_zero_[out] = zero;
    }
    return absl::OkStatus();
  }

  // The data path moves on to `out` (one value).
  absl::Status Replace(const std::string& out, const MainValue& v) {
    for (auto& [name, _] : current_) stale_.insert(name);
    current_.clear();
    current_[out] = v;
    return absl::OkStatus();
  }

  absl::Status Recurrent(const onnx::NodeProto& n, int k, int main_index, const MainValue& in) {
    const bool lstm = n.op_type() == "LSTM";
    const int gates = lstm ? 4 : 3;
    if (main_index != 0) return Refuse(n, k, "the data path must be input X");
    if (!spec_.layers.empty()) {
      return Refuse(n, k,
                    "a recurrent layer after a Linear layer is not supported (qsig runs "
                    "recurrent layers first, then the Linear head)");
    }
    if ((lstm && !spec_.gru.empty()) || (!lstm && !spec_.lstm.empty())) {
      return Refuse(n, k, "mixing LSTM and GRU layers is not supported");
    }
    if (const auto* a = FindAttr(n, "direction"); a != nullptr && a->s() != "forward") {
      return Refuse(n, k,
                    absl::StrCat("direction '", a->s(),
                                 "' is not supported (forward "
                                 "only: bidirectional=False)"));
    }
    if (FindAttr(n, "clip") != nullptr) return Refuse(n, k, "the clip attribute is not supported");
    if (AttrInt(n, "input_forget", 0) != 0) return Refuse(n, k, "input_forget is not supported");
    if (const auto* a = FindAttr(n, "activations"); a != nullptr) {
      const std::vector<std::string> want =
          lstm ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
               : std::vector<std::string>{"Sigmoid", "Tanh"};
      if (std::vector<std::string>(a->strings().begin(), a->strings().end()) != want) {
        return Refuse(n, k, "non-default activations are not supported");
      }
    }
    if (!lstm && AttrInt(n, "linear_before_reset", 0) != 1) {
      return Refuse(n, k, "linear_before_reset = 0 is not supported (PyTorch's GRU exports 1)");
    }
    const int64_t layout = AttrInt(n, "layout", 0);
    if (n.input_size() > 4 && !n.input(4).empty()) {
      return Refuse(n, k, "sequence_lens is not supported (every window has the full length)");
    }
    if (!AbsentOrZero(n, 5) || (lstm && !AbsentOrZero(n, 6))) {
      return Refuse(n, k,
                    "a non-zero initial state is not supported (qsig starts each window "
                    "from h0 = c0 = 0)");
    }
    if (lstm && !AbsentOrZero(n, 7)) return Refuse(n, k, "peephole weights are not supported");
    // Axes of X: [time, batch, feature] (layout 0) or [batch, time, feature] (layout 1).
    if (in.axes.size() != 3 || in.axes[2] != Axis::kFeature || in.last_step) {
      return Refuse(n, k, "X must be a [time, batch, features] sequence");
    }
    const Axis t_axis = in.axes[layout == 0 ? 0 : 1];
    const Axis b_axis = in.axes[layout == 0 ? 1 : 0];
    const bool t_ok = t_axis == Axis::kTime || t_axis == Axis::kIn0 || t_axis == Axis::kIn1;
    const bool b_ok = b_axis == Axis::kBatch || b_axis == Axis::kIn0 || b_axis == Axis::kIn1;
    if (!t_ok || !b_ok) return Refuse(n, k, "X's axes are not [time, batch, features]");
    if (t_axis == Axis::kIn0 || t_axis == Axis::kIn1) {
      time_input_axis_ = t_axis == Axis::kIn0 ? 0 : 1;
    }
    const int64_t hidden = AttrInt(n, "hidden_size", 0);
    QSIG_ASSIGN_OR_RETURN(const Const* w, GetConst(n, k, 1));
    QSIG_ASSIGN_OR_RETURN(const Const* r, GetConst(n, k, 2));
    const int64_t in_size = in.features;
    if (hidden <= 0 || !w->is_float ||
        w->dims != std::vector<int64_t>{1, gates * hidden, in_size}) {
      return Refuse(n, k,
                    absl::StrCat("W must be float [1, ", gates, "*hidden_size, ", in_size, "]"));
    }
    if (!r->is_float || r->dims != std::vector<int64_t>{1, gates * hidden, hidden}) {
      return Refuse(n, k, absl::StrCat("R must be float [1, ", gates, "*hidden_size, hidden]"));
    }
    std::vector<float> b(static_cast<size_t>(2 * gates * hidden), 0.0f);
    if (n.input_size() > 3 && !n.input(3).empty()) {
      QSIG_ASSIGN_OR_RETURN(const Const* bc, GetConst(n, k, 3));
      if (!bc->is_float || bc->dims != std::vector<int64_t>{1, 2 * gates * hidden}) {
        return Refuse(n, k, "B must be float [1, 2*gates*hidden_size]");
      }
      b = bc->f;
    }
    // ONNX gate blocks -> PyTorch gate blocks. LSTM: ONNX i, o, f, c; PyTorch i, f, g(=c), o.
    // GRU: ONNX z, r, h; PyTorch r, z, n(=h).
    const std::vector<int> from = lstm ? std::vector<int>{0, 2, 3, 1} : std::vector<int>{1, 0, 2};
    const size_t H = static_cast<size_t>(hidden);
    auto remap = [&](const std::vector<float>& src, size_t cols) {
      std::vector<float> dst(src.size());
      for (int g = 0; g < gates; ++g) {
        std::copy_n(src.begin() + static_cast<std::ptrdiff_t>(from[g] * H * cols), H * cols,
                    dst.begin() + static_cast<std::ptrdiff_t>(g * H * cols));
      }
      return dst;
    };
    const std::vector<float> wb(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(gates * H));
    const std::vector<float> rb(b.begin() + static_cast<std::ptrdiff_t>(gates * H), b.end());
    auto fill = [&](auto& layer) {
      layer.input_size = static_cast<int>(in_size);
      layer.hidden_size = static_cast<int>(hidden);
      layer.w_ih = remap(w->f, static_cast<size_t>(in_size));
      layer.w_hh = remap(r->f, H);
      layer.b_ih = remap(wb, 1);
      layer.b_hh = remap(rb, 1);
    };
    rnn_ranges_.push_back(in.range);
    if (lstm) {
      LstmLayer l;
      fill(l);
      spec_.lstm.push_back(std::move(l));
      spec_.arch = Arch::kLstm;
    } else {
      GruLayer l;
      fill(l);
      spec_.gru.push_back(std::move(l));
      spec_.arch = Arch::kGru;
    }
    for (auto& [name, _] : current_) stale_.insert(name);
    current_.clear();
    MainValue y;
    y.features = static_cast<int>(hidden);
    y.axes = layout == 0 ? std::vector<Axis>{Axis::kTime, Axis::kDir, Axis::kBatch, Axis::kFeature}
                         : std::vector<Axis>{Axis::kBatch, Axis::kTime, Axis::kDir, Axis::kFeature};
    if (n.output_size() > 0 && !n.output(0).empty()) current_[n.output(0)] = y;
    MainValue yh;
    yh.features = static_cast<int>(hidden);
    yh.last_step = true;
    yh.axes = layout == 0 ? std::vector<Axis>{Axis::kDir, Axis::kBatch, Axis::kFeature}
                          : std::vector<Axis>{Axis::kBatch, Axis::kDir, Axis::kFeature};
    if (n.output_size() > 1 && !n.output(1).empty()) current_[n.output(1)] = yh;
    if (lstm && n.output_size() > 2 && !n.output(2).empty()) {
      unsupported_[n.output(2)] = "uses the LSTM cell state output Y_c (qsig's head reads h)";
    }
    last_was_linear_ = false;
    return absl::OkStatus();
  }

  absl::Status AddLinear(const onnx::NodeProto& n, int k, const MainValue& in,
                         std::vector<float> weight, int out, std::vector<float> bias,
                         bool bias_open) {
    if (in.axes.empty() || in.axes.back() != Axis::kFeature) {
      return Refuse(n, k, "a Linear layer must act on the feature axis");
    }
    if (spec_.lstm.empty() && spec_.gru.empty() && !in.last_step) {
      return Refuse(n, k,
                    "a Linear layer on a [batch, time, features] input needs a recurrent "
                    "layer first (an MLP reads [batch, features])");
    }
    LinearLayer l;
    l.in = in.features;
    l.out = out;
    l.weight = std::move(weight);
    l.bias = std::move(bias);
    spec_.layers.push_back(std::move(l));
    layer_ranges_.push_back(in.range);
    last_was_linear_ = true;
    relu_from_qdq_ = false;
    bias_open_ = bias_open;
    MainValue v = in;
    v.features = out;
    v.range = {};
    return Replace(n.output(0), v);
  }

  // Per-feature normalization at the graph's input, (x - mean) / std: a Sub and / or a Div by
  // constants before the first layer (qsig export --onnx-qdq writes them; a model that folded
  // the mean into the first bias has the Div only).
  absl::Status Normalize(const onnx::NodeProto& n, int k, const MainValue& in) {
    const bool sub = n.op_type() == "Sub";
    if (!spec_.layers.empty() || !spec_.lstm.empty() || !spec_.gru.empty() || in.range.set ||
        in.features != spec_.input_size || (sub && (!norm_mean_.empty() || !norm_std_.empty())) ||
        (!sub && !norm_std_.empty())) {
      return Refuse(n, k,
                    "Sub / Div are supported only as the input's normalization, (x - mean) / "
                    "std by constants before the first layer and any QuantizeLinear");
    }
    QSIG_ASSIGN_OR_RETURN(const Const* c, GetConst(n, k, 1));
    if (!c->is_float || (c->size() != static_cast<size_t>(in.features) && c->size() != 1) ||
        (!c->dims.empty() && c->dims.back() != static_cast<int64_t>(c->size()))) {
      return Refuse(n, k,
                    absl::StrCat("the normalization constant must hold ", in.features,
                                 " floats (one per feature) or 1"));
    }
    std::vector<float> v(static_cast<size_t>(in.features));
    for (size_t i = 0; i < v.size(); ++i) v[i] = c->f[c->size() == 1 ? 0 : i];
    if (!sub && std::any_of(v.begin(), v.end(), [](float x) { return !(x > 0.0f); })) {
      return Refuse(n, k, "normalization divides by a value <= 0 (std must be positive)");
    }
    (sub ? norm_mean_ : norm_std_) = std::move(v);
    return Replace(n.output(0), in);
  }

  absl::Status Gemm(const onnx::NodeProto& n, int k, const MainValue& in) {
    if (AttrInt(n, "transA", 0) != 0) return Refuse(n, k, "transA = 1 is not supported");
    if (in.axes.size() != 2) return Refuse(n, k, "Gemm input must be [batch, features]");
    QSIG_ASSIGN_OR_RETURN(const Const* b, GetConst(n, k, 1));
    const bool trans_b = AttrInt(n, "transB", 0) != 0;
    if (!b->is_float || b->dims.size() != 2 || b->dims[trans_b ? 1 : 0] != in.features) {
      return Refuse(n, k, absl::StrCat("B must be a float matrix with ", in.features, " inputs"));
    }
    const float alpha = AttrFloat(n, "alpha", 1.0f);
    const float beta = AttrFloat(n, "beta", 1.0f);
    const int out = static_cast<int>(b->dims[trans_b ? 0 : 1]);
    const int inf = in.features;
    std::vector<float> w(static_cast<size_t>(out) * inf);
    for (int o = 0; o < out; ++o) {
      for (int i = 0; i < inf; ++i) {
        const float v = trans_b ? b->f[static_cast<size_t>(o) * inf + i]
                                : b->f[static_cast<size_t>(i) * out + o];
        w[static_cast<size_t>(o) * inf + i] = alpha == 1.0f ? v : alpha * v;
      }
    }
    std::vector<float> bias(static_cast<size_t>(out), 0.0f);
    const bool has_c = n.input_size() > 2 && !n.input(2).empty();
    if (has_c) {
      QSIG_ASSIGN_OR_RETURN(const Const* c, GetConst(n, k, 2));
      if (!c->is_float || (c->size() != static_cast<size_t>(out) && c->size() != 1)) {
        return Refuse(n, k, absl::StrCat("C must hold ", out, " floats (or 1)"));
      }
      for (int o = 0; o < out; ++o) {
        const float v = c->f[c->size() == 1 ? 0 : static_cast<size_t>(o)];
        bias[static_cast<size_t>(o)] = beta == 1.0f ? v : beta * v;
      }
    }
    return AddLinear(n, k, in, std::move(w), out, std::move(bias), !has_c);
  }

  absl::Status MatMul(const onnx::NodeProto& n, int k, const MainValue& in) {
    QSIG_ASSIGN_OR_RETURN(const Const* b, GetConst(n, k, 1));
    if (!b->is_float || b->dims.size() != 2 || b->dims[0] != in.features) {
      return Refuse(
          n, k, absl::StrCat("the second input must be a float [", in.features, ", out] matrix"));
    }
    const int out = static_cast<int>(b->dims[1]);
    const int inf = in.features;
    std::vector<float> w(static_cast<size_t>(out) * inf);
    for (int o = 0; o < out; ++o) {
      for (int i = 0; i < inf; ++i) {
        w[static_cast<size_t>(o) * inf + i] = b->f[static_cast<size_t>(i) * out + o];
      }
    }
    return AddLinear(n, k, in, std::move(w), out, std::vector<float>(static_cast<size_t>(out)),
                     true);
  }

  absl::Status Add(const onnx::NodeProto& n, int k, int main_index, const MainValue& in) {
    if (n.input_size() != 2) return Refuse(n, k, "Add must have two inputs");
    if (!last_was_linear_ || !bias_open_) {
      return Refuse(n, k, "Add is supported only as the bias of a preceding MatMul / Gemm");
    }
    QSIG_ASSIGN_OR_RETURN(const Const* c, GetConst(n, k, 1 - main_index));
    LinearLayer& l = spec_.layers.back();
    const bool broadcast_ok =
        std::all_of(c->dims.begin(), c->dims.empty() ? c->dims.end() : c->dims.end() - 1,
                    [](int64_t d) { return d == 1; });
    if (!c->is_float || !broadcast_ok ||
        (c->size() != static_cast<size_t>(l.out) && c->size() != 1)) {
      return Refuse(n, k, absl::StrCat("the bias must hold ", l.out, " floats"));
    }
    for (int o = 0; o < l.out; ++o) {
      l.bias[static_cast<size_t>(o)] += c->f[c->size() == 1 ? 0 : static_cast<size_t>(o)];
    }
    bias_open_ = false;
    MainValue v = in;
    v.range = {};
    return Replace(n.output(0), v);
  }

  absl::Status Act(const onnx::NodeProto& n, int k, const MainValue& in) {
    MainValue v = in;
    v.range = {};
    if (relu_from_qdq_ && n.op_type() == "Relu") {  // Relu after the QDQ that implied one.
      relu_from_qdq_ = false;
      last_was_linear_ = false;
      return Replace(n.output(0), v);
    }
    if (relu_from_qdq_) {
      // Another activation follows: the QDQ was only the range of the pre-activation value
      // (it never saw a negative value), not a removed Relu.
      spec_.layers.back().activation = Activation::kNone;
      relu_from_qdq_ = false;
    }
    if (!last_was_linear_ || spec_.layers.empty() ||
        spec_.layers.back().activation != Activation::kNone) {
      return Refuse(n, k,
                    "an activation is supported only right after a Linear layer "
                    "(Gemm or MatMul + Add)");
    }
    const std::string& op = n.op_type();
    spec_.layers.back().activation = op == "Relu"   ? Activation::kRelu
                                     : op == "Tanh" ? Activation::kTanh
                                                    : Activation::kSigmoid;
    bias_open_ = false;
    last_was_linear_ = false;
    return Replace(n.output(0), v);
  }

  absl::Status Transpose(const onnx::NodeProto& n, int k, const MainValue& in) {
    std::vector<int64_t> perm;
    if (const auto* a = FindAttr(n, "perm"); a != nullptr) {
      perm.assign(a->ints().begin(), a->ints().end());
    } else {
      for (int64_t i = static_cast<int64_t>(in.axes.size()) - 1; i >= 0; --i) perm.push_back(i);
    }
    if (perm.size() != in.axes.size()) return Refuse(n, k, "perm does not match the rank");
    MainValue v = in;
    std::vector<bool> seen(perm.size(), false);
    for (size_t i = 0; i < perm.size(); ++i) {
      if (perm[i] < 0 || perm[i] >= static_cast<int64_t>(perm.size()) || seen[perm[i]]) {
        return Refuse(n, k, "perm is not a permutation");
      }
      seen[perm[i]] = true;
      v.axes[i] = in.axes[static_cast<size_t>(perm[i])];
    }
    if (v.axes.back() != Axis::kFeature && in.axes.back() == Axis::kFeature &&
        !(spec_.lstm.empty() && spec_.gru.empty() && v.axes.size() == 3)) {
      return Refuse(n, k, "moving the feature axis is not supported");
    }
    return Replace(n.output(0), v);
  }

  absl::StatusOr<std::vector<int64_t>> Axes(const onnx::NodeProto& n, int k, const MainValue& in,
                                            int input) {
    std::vector<int64_t> axes;
    if (n.input_size() > input && !n.input(input).empty()) {
      QSIG_ASSIGN_OR_RETURN(const Const* c, GetConst(n, k, input));
      axes = c->i;
    } else if (const auto* a = FindAttr(n, "axes"); a != nullptr) {
      axes.assign(a->ints().begin(), a->ints().end());
    }
    const int64_t rank = static_cast<int64_t>(in.axes.size());
    for (int64_t& a : axes) {
      if (a < 0) a += rank;
      if (a < 0 || a >= rank) return Refuse(n, k, "axis out of range");
    }
    return axes;
  }

  bool SizeOne(const MainValue& v, size_t axis) const {
    const Axis a = v.axes[axis];
    return a == Axis::kDir || a == Axis::kLast || (a == Axis::kFeature && v.features == 1);
  }

  absl::Status Squeeze(const onnx::NodeProto& n, int k, const MainValue& in) {
    QSIG_ASSIGN_OR_RETURN(std::vector<int64_t> axes, Axes(n, k, in, 1));
    if (axes.empty()) {
      for (size_t i = 0; i < in.axes.size(); ++i) {
        if (SizeOne(in, i)) axes.push_back(static_cast<int64_t>(i));
      }
    }
    MainValue v = in;  // Values (and a QDQ range) unchanged; only the axes change.
    v.axes.clear();
    for (size_t i = 0; i < in.axes.size(); ++i) {
      const bool drop = std::find(axes.begin(), axes.end(), static_cast<int64_t>(i)) != axes.end();
      if (drop && !SizeOne(in, i)) {
        return Refuse(n, k,
                      absl::StrCat("squeezes axis ", i,
                                   ", which is not known to have "
                                   "size 1"));
      }
      if (!drop) v.axes.push_back(in.axes[i]);
    }
    return Replace(n.output(0), v);
  }

  // True if `index` names the last step of a time axis (-1, or window-1 when the window is
  // static). `axis` is kTime / kIn0 / kIn1.
  bool IsLastIndex(int64_t index) const {
    if (index == -1) return true;
    const int64_t w = StaticWindow();
    return w > 0 && index == w - 1;
  }
  // The window: the input's time axis when the file fixes it, otherwise ImportOptions::window.
  int64_t StaticWindow() const {
    if (const int64_t d = FileWindow(); d > 0) return d;
    if (options_.window > 0) return options_.window;
    return -1;
  }
  int64_t FileWindow() const {
    if (time_input_axis_ >= 0 && time_input_axis_ < static_cast<int>(input_dims_.size())) {
      return input_dims_[static_cast<size_t>(time_input_axis_)];
    }
    return -1;
  }

  bool IsTimeAxis(const MainValue& in, size_t axis) {
    const Axis a = in.axes[axis];
    if (a == Axis::kTime) return true;
    // An MLP reading the last step of a [batch, time, features] input (x[:, -1]): the
    // untagged input axis becomes the time axis.
    if ((a == Axis::kIn0 || a == Axis::kIn1) && spec_.lstm.empty() && spec_.gru.empty()) {
      time_input_axis_ = a == Axis::kIn0 ? 0 : 1;
      return true;
    }
    return false;
  }

  absl::Status Slice(const onnx::NodeProto& n, int k, const MainValue& in) {
    QSIG_ASSIGN_OR_RETURN(const Const* starts, GetConst(n, k, 1));
    QSIG_ASSIGN_OR_RETURN(const Const* ends, GetConst(n, k, 2));
    std::vector<int64_t> axes;
    if (n.input_size() > 3 && !n.input(3).empty()) {
      QSIG_ASSIGN_OR_RETURN(axes, Axes(n, k, in, 3));
    } else {
      for (size_t i = 0; i < starts->i.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    }
    std::vector<int64_t> steps(axes.size(), 1);
    if (n.input_size() > 4 && !n.input(4).empty()) {
      QSIG_ASSIGN_OR_RETURN(const Const* s, GetConst(n, k, 4));
      steps = s->i;
    }
    if (starts->i.size() != axes.size() || ends->i.size() != axes.size() ||
        steps.size() != axes.size()) {
      return Refuse(n, k, "starts, ends, axes and steps must have the same length");
    }
    MainValue v = in;
    constexpr int64_t kBig = std::numeric_limits<int32_t>::max();
    for (size_t j = 0; j < axes.size(); ++j) {
      const size_t a = static_cast<size_t>(axes[j]);
      const int64_t s = starts->i[j], e = ends->i[j];
      const bool whole = steps[j] == 1 && s == 0 && e >= kBig;
      if (whole) continue;
      if (steps[j] == 1 && IsTimeAxis(v, a) && IsLastIndex(s) && (e >= kBig || e == s + 1) &&
          e != 0) {
        v.axes[a] = Axis::kLast;
        v.last_step = true;
        continue;
      }
      return Refuse(n, k,
                    absl::StrCat("slicing axis ", a, " [", s, ":", e, ":", steps[j],
                                 "] is not supported (only the last time step, "
                                 "[-1:] or [:, -1:])"));
    }
    return Replace(n.output(0), v);
  }

  absl::Status Gather(const onnx::NodeProto& n, int k, const MainValue& in) {
    int64_t axis = AttrInt(n, "axis", 0);
    if (axis < 0) axis += static_cast<int64_t>(in.axes.size());
    if (axis < 0 || axis >= static_cast<int64_t>(in.axes.size())) {
      return Refuse(n, k, "axis out of range");
    }
    QSIG_ASSIGN_OR_RETURN(const Const* idx, GetConst(n, k, 1));
    if (idx->i.size() != 1) return Refuse(n, k, "only a single index is supported");
    const size_t a = static_cast<size_t>(axis);
    const bool scalar = idx->dims.empty();
    const int64_t i = idx->i[0];
    MainValue v = in;
    if (IsTimeAxis(v, a) && IsLastIndex(i)) {
      v.last_step = true;
      if (scalar) {
        v.axes.erase(v.axes.begin() + axis);
      } else {
        v.axes[a] = Axis::kLast;
      }
      return Replace(n.output(0), v);
    }
    if ((in.axes[a] == Axis::kDir || in.axes[a] == Axis::kLast) && (i == 0 || i == -1)) {
      if (scalar) v.axes.erase(v.axes.begin() + axis);
      return Replace(n.output(0), v);
    }
    return Refuse(n, k,
                  absl::StrCat("gathering index ", i, " of axis ", axis,
                               " is not supported (only the last time step)"));
  }

  absl::Status Finish(const onnx::GraphProto& g) {
    if (g.output_size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": the graph has ", g.output_size(),
                                                     " outputs; a qsig model has one"));
    }
    const std::string& out = g.output(0).name();
    const auto it = current_.find(out);
    if (it == current_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": graph output '", out, "' is not the end of the data path from input '",
          input_name_, "' (it is a constant, a branch, or a value the importer did not follow)"));
    }
    const MainValue& v = it->second;
    if (v.quantized) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": graph output '", out, "' is the integer output of QuantizeLinear '", v.q.node,
          "'; end the graph with a DequantizeLinear (QDQ format)"));
    }
    const bool recurrent = !spec_.lstm.empty() || !spec_.gru.empty();
    // Input ranges from QDQ pairs, one per QuantizableLayers entry (none: empty).
    std::vector<SourceRange> ranges = rnn_ranges_;
    ranges.insert(ranges.end(), layer_ranges_.begin(), layer_ranges_.end());
    if (std::any_of(ranges.begin(), ranges.end(), [](const SourceRange& r) { return r.set; })) {
      spec_.input_ranges = std::move(ranges);
    }
    if (!norm_mean_.empty() || !norm_std_.empty()) {
      if (!options_.feature_mean.empty() || !options_.feature_std.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_,
            ": the graph normalizes its input itself (Sub / Div before the first layer); do not "
            "pass feature_mean / feature_std (--mean / --std) as well"));
      }
      const size_t f = static_cast<size_t>(spec_.input_size);
      spec_.feature_mean = norm_mean_.empty() ? std::vector<float>(f, 0.0f) : norm_mean_;
      spec_.feature_std = norm_std_.empty() ? std::vector<float>(f, 1.0f) : norm_std_;
    }
    if (spec_.layers.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": the model has no Linear layer; qsig models end in a Linear head"));
    }
    if (spec_.layers.back().out != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": the model outputs ", spec_.layers.back().out,
                       " values per sample; a qsig model outputs one signal"));
    }
    if (!v.last_step) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": graph output '", out,
                       "' still has a time axis; the model must read the "
                       "last step (out[:, -1] or h_n[-1])"));
    }
    int batch_like = 0;
    for (Axis a : v.axes) {
      if (a == Axis::kBatch || a == Axis::kIn0 || a == Axis::kIn1) ++batch_like;
      if (a == Axis::kTime) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": graph output '", out, "' still has a time axis"));
      }
    }
    if (batch_like > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": graph output '", out, "' has more than one batch-like axis"));
    }
    if (recurrent || time_input_axis_ >= 0) {
      if (const int64_t d = FileWindow(); d > 0 && options_.window > 0 && d != options_.window) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_, ": the file fixes the window at ", d, " (the input's time axis); --window ",
            options_.window, " disagrees (omit it, or re-export with a dynamic time axis)"));
      }
      const int64_t w = StaticWindow();
      if (w <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_,
                         ": the input's time axis is dynamic, so the window is unknown; pass it "
                         "(ImportOptions::window / --window)"));
      }
      spec_.window = static_cast<int>(w);
    } else {
      spec_.window = 1;
    }
    if (!recurrent) spec_.arch = Arch::kMlp;
    return absl::OkStatus();
  }

  std::string path_;
  ImportOptions options_;
  ModelSpec spec_;
  std::map<std::string, Const> consts_;
  std::map<std::string, bool> aux_zero_;
  std::map<std::string, MainValue> current_;        // The data path's newest value(s).
  std::set<std::string> stale_;                     // Earlier data-path values.
  std::map<std::string, std::string> unsupported_;  // Value -> why reading it is refused.
  std::string input_name_;
  std::vector<int64_t> input_dims_;  // Static sizes of a rank-3 input's axes 0, 1 (-1: dynamic).
  int time_input_axis_ = -1;
  bool last_was_linear_ = false;
  bool bias_open_ = false;
  bool relu_from_qdq_ = false;  // The last layer's Relu was implied by a QDQ pair (zero point 0).
  std::vector<SourceRange> rnn_ranges_, layer_ranges_;  // Per layer: its input's QDQ range.
  std::vector<float> norm_mean_, norm_std_;  // The graph's own input normalization, if any.
};

}  // namespace

absl::StatusOr<ModelSpec> ImportOnnx(const std::string& path, const ImportOptions& options) {
  QSIG_ASSIGN_OR_RETURN(std::string bytes, internal::ReadFileBytes(path));
  OnnxImporter importer(path, options);
  return importer.Run(bytes);
}

}  // namespace qsig::models::io
