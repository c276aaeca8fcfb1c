// The .qsig artifact: an FP32 model plus everything needed to rebuild and verify its INT8
// runtime, in a versioned, checksummed file (DESIGN.md: "a server never serves a model it cannot
// verify").
//
// File layout (little-endian):
//   bytes  0..7   magic "QSIGART\0"
//   bytes  8..11  u32 format version (this build writes and reads kArtifactFormatVersion)
//   bytes 12..15  u32 reserved, 0
//   bytes 16..23  u64 payload size
//   bytes 24..55  SHA-256 of the payload
//   bytes 56..    payload: a serialized qsig.artifact.v1.Artifact (models/io/proto/artifact.proto)
//
// How the INT8 runtime is rebuilt. models::CalibrateInt8Model takes calibration windows, not
// stored ranges, so the artifact stores the windows it was calibrated on (at most
// kMaxStoredWindows, sub-sampled evenly from the calibration set) with the Int8Options; rebuilding
// runs the same calibration on the same windows and checks the result against INT8 outputs
// recorded at quantization time (bit-exact on the same kernel ISA, within a small tolerance on
// another). The per-channel int8 weights and the activation ranges stored beside them are the
// same quantities, computed with quant's public functions: a record for export and review, not
// read back by the runtime. Source ranges (ModelSpec::input_ranges, e.g. from ONNX QDQ scales)
// are part of the model: stored with it (proto field Model.input_ranges, added compatibly in
// format version 1), used again by the rebuild, and recorded as the activation ranges of those
// tensors when the options use them. An older qsig ignores the field and rebuilds with
// calibrated ranges; its reference-output check then refuses the artifact (bit-exact on the
// same ISA) rather than serve a different runtime.
// Thread-safety: the functions are reentrant; an Artifact is plain data.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/model.h"
#include "qsig/quant/quantize.h"

namespace qsig::models::io {

inline constexpr uint32_t kArtifactFormatVersion = 1;
inline constexpr size_t kMaxStoredWindows = 4096;

struct Int8Weight {
  std::string tensor;  // "lstm[0].w_ih", "lstm[0].w_hh", "gru[0].w_ih", "layers[0].weight", ...
  quant::PerChannelS8 q;
};

struct ActivationRange {
  std::string tensor;  // "lstm[0].x", "lstm[0].h", "gru[0].x", "layers[0].input", ...
  float min = 0;
  float max = 0;
  quant::QuantParams params;  // u8, asymmetric, from [min, max].
};

struct CalibrationRecord {
  Int8Options options;
  uint64_t windows_seen = 0;   // Windows offered for calibration (before sub-sampling).
  std::vector<float> windows;  // The windows used: n x window x input_size raw features.
  int64_t first_ts_ns = -1;    // exchange_ts_ns of the first / last calibration row (-1: unknown).
  int64_t last_ts_ns = -1;
  std::string source;                    // Calibration data file, if any.
  std::vector<float> reference_outputs;  // INT8 outputs on the first stored windows.
  std::string kernel_isa;                // KernelIsa() that produced reference_outputs.
};

struct Artifact {
  uint32_t format_version = kArtifactFormatVersion;
  ModelSpec spec;  // spec.sha256 is the source model file's SHA-256.
  std::vector<Int8Weight> int8_weights;
  std::vector<ActivationRange> activation_ranges;
  CalibrationRecord calibration;
  std::string source_path;
  std::string source_format;  // "json", "onnx", "torchscript", "qsig".
  std::string qsig_build;     // git describe of the writer ("unknown" if not built from git).
  int64_t created_unix_s = 0;
  std::string content_sha256;  // Hex SHA-256 of the payload; set by WriteArtifact / ReadArtifact.
};

// Where the model and calibration data came from (recorded in the artifact).
struct ArtifactSource {
  std::string source_path;
  std::string source_format;
  std::string calibration_source;
  int64_t first_ts_ns = -1;
  int64_t last_ts_ns = -1;
};

// Quantizes `spec`: sub-samples `calib_windows` (n x window x input_size) to at most
// kMaxStoredWindows, calibrates the INT8 runtime on them with `options`, records the per-channel
// int8 weights, the activation ranges (observed with options.method), and the INT8 outputs on
// up to 64 stored windows. `int8_model`, if not null, receives the calibrated runtime, and
// `description`, if not null, how it quantizes.
absl::StatusOr<Artifact> MakeArtifact(std::shared_ptr<const ModelSpec> spec,
                                      std::span<const float> calib_windows,
                                      const Int8Options& options, const ArtifactSource& source,
                                      std::unique_ptr<Model>* int8_model = nullptr,
                                      Int8Description* description = nullptr);

// Writes `artifact` to `path` (to a temporary file, then renamed, so a reader never sees half a
// file). Sets artifact.content_sha256.
absl::Status WriteArtifact(Artifact& artifact, const std::string& path);

// Reads and verifies an artifact. Refuses, with a message naming the file and what to do: a file
// that is not an artifact (wrong magic), a newer or unknown format version, a truncated file,
// a checksum mismatch (corrupted), a payload that does not parse, and an invalid model.
absl::StatusOr<Artifact> ReadArtifact(const std::string& path);

// Rebuilds the INT8 runtime: CalibrateInt8Model on the stored windows and options, then checks
// its outputs against calibration.reference_outputs. Fails if they differ (the runtime that
// would be served is not the one that was validated).
// `description`, if not null, receives how the rebuilt runtime quantizes (models::DescribeInt8).
absl::StatusOr<std::unique_ptr<Model>> BuildInt8Model(const Artifact& artifact,
                                                      Int8Description* description = nullptr);

// The check BuildInt8Model makes: `int8`'s outputs on the first stored windows (at most
// `max_windows`; 0 = all) equal calibration.reference_outputs (bit-exact on the same kernel ISA
// and qsig build, within 1% of their RMS otherwise). For runtimes rebuilt another way (the
// server restores them from a recorded Int8Description without calibrating).
absl::Status VerifyInt8Model(const Artifact& artifact, const Model& int8, size_t max_windows = 0);

}  // namespace qsig::models::io
