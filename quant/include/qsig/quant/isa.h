// Run-time instruction-set selection for the integer kernels.
//
// The CPU is probed once (cpuid for the feature bits, xgetbv for the operating system's consent
// to save the wider registers: a CPU may have AVX-512 while the OS or hypervisor does not enable
// it). The table of variants is ordered from most specific to the scalar reference and the first
// one that the CPU supports and the caps allow wins. Two caps apply, both upper bounds:
//   - the environment variable QSIG_MAX_ISA (scalar | avx2 | avx_vnni | avx512_vnni), read once
//     at the first call into this module, for A/B runs without rebuilding;
//   - SetMaxIsa(), for tests, benchmarks and the server's config.
//
// Thread-safety: ActiveIsa() and the dispatched kernels are safe from any thread; the choice is
// published with an atomic pointer. SetMaxIsa() is safe too, but a kernel call racing it may run
// either variant (both give identical results).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsig::quant {

// Ordered: a larger value is a more specific (faster) variant.
enum class Isa : int {
  kScalar = 0,      // Portable C++: the reference kernels.
  kAvx2 = 1,        // AVX2 + FMA: vpmaddubsw + vpmaddwd (Haswell and later, Zen 1 and later).
  kAvxVnni = 2,     // AVX-VNNI: VEX vpdpbusd on ymm (Alder Lake, Sapphire Rapids and later).
  kAvx512Vnni = 3,  // AVX512F/BW/VL + AVX512-VNNI: vpdpbusd on zmm (Cascade Lake, Zen 4 and later).
};
inline constexpr int kNumIsas = 4;

// "scalar", "avx2", "avx_vnni" or "avx512_vnni" (the names QSIG_MAX_ISA accepts).
const char* IsaName(Isa isa);
absl::StatusOr<Isa> ParseIsa(std::string_view name);

// Bit (1 << int(isa)) is set for each variant this CPU and OS can run; kScalar is always set.
uint32_t SupportedIsaMask();
inline bool IsaSupported(Isa isa) { return (SupportedIsaMask() >> static_cast<int>(isa)) & 1u; }

// The table rule as a pure function: the most specific variant in `supported_mask` that is
// <= cap (kScalar if none).
Isa ChooseIsa(uint32_t supported_mask, Isa cap);

// The variant the dispatched kernels use now.
Isa ActiveIsa();
inline const char* ActiveIsaName() { return IsaName(ActiveIsa()); }

// Caps the choice at `cap` (in addition to QSIG_MAX_ISA) and returns the variant now active.
// SetMaxIsa(Isa::kAvx512Vnni) removes the API cap.
Isa SetMaxIsa(Isa cap);

// The cap QSIG_MAX_ISA asked for: kAvx512Vnni if unset, an error naming the bad value (which is
// then ignored) if it is not one of the names above.
absl::StatusOr<Isa> EnvMaxIsa();

// Human-readable CPU brand string (cpuid leaves 0x80000002..4), e.g. for benchmark context.
const char* CpuBrand();

}  // namespace qsig::quant
