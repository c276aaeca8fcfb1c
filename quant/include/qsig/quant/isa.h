// Run-time instruction-set selection for the kernel layer (kernels.h).
//
// The CPU is probed once (cpuid for the feature bits, xgetbv for the operating system's consent
// to save the wider registers: a CPU may have AVX-512 while the OS or hypervisor does not enable
// it). One dispatch table, ordered from most specific to the scalar reference (avx512vnni,
// avxvnni, avx2, ref); the first entry the CPU supports within the caps wins. Two caps apply,
// both upper bounds:
//   - the environment variable QSIG_MAX_ISA (ref | avx2 | avxvnni | avx512vnni, any case), read
//     once at the first call into this module, for A/B runs without rebuilding. An unknown value
//     is an error: EnvMaxIsa() returns it, every model build fails with it (models'
//     BuildRuntime), and until then the kernels run the reference (a typo never runs faster
//     code than asked);
//   - SetMaxIsa(), for tests, benchmarks and the server's config.
//
// Thread-safety: every function here is safe from any thread; the choice is published with an
// atomic. A kernel table fetched before a SetMaxIsa() stays valid (every table gives identical
// integer results).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace qsig::quant {

// Ordered: a larger value is a more specific (faster) variant.
enum class Isa : int {
  kRef = 0,         // Portable C++: the reference kernels (the specification).
  kAvx2 = 1,        // AVX2 + FMA: vpmaddubsw + vpmaddwd (Haswell and later, Zen 1 and later).
  kAvxVnni = 2,     // AVX-VNNI: VEX vpdpbusd on ymm (Alder Lake, Sapphire Rapids and later).
  kAvx512Vnni = 3,  // AVX512F/BW/VL + AVX512-VNNI: vpdpbusd on zmm (Cascade Lake, Zen 4 and later).
};
inline constexpr int kNumIsas = 4;

// "ref", "avx2", "avxvnni" or "avx512vnni": the names QSIG_MAX_ISA accepts (ParseIsa ignores
// case), the names logs, benchmarks, `qsig inspect` and artifacts show.
const char* IsaName(Isa isa) noexcept;
absl::StatusOr<Isa> ParseIsa(std::string_view name);

// True for the ISAs with a u8 x s8 -> s32 dot-product instruction (vpdpbusd).
constexpr bool IsaHasVnni(Isa isa) noexcept {
  return isa == Isa::kAvxVnni || isa == Isa::kAvx512Vnni;
}
// True where 7-bit weights (quantize.h's reduce_range) make the u8 x s8 kernels faster: AVX2,
// whose vpmaddubsw saturates on 8-bit weights, so the kernels split the activations unless every
// weight fits [-64, 64]. The reference and the VNNI ISAs run at the same speed either way.
constexpr bool IsaPrefersReducedRange(Isa isa) noexcept { return isa == Isa::kAvx2; }

// Bit (1 << int(isa)) is set for each variant this CPU and OS can run; kRef is always set.
uint32_t SupportedIsaMask() noexcept;
inline bool IsaSupported(Isa isa) noexcept {
  return (SupportedIsaMask() >> static_cast<int>(isa)) & 1u;
}

// The table rule as a pure function: the first entry of the dispatch table (most specific first)
// that is in `supported_mask` and <= cap; kRef if none.
Isa ChooseIsa(uint32_t supported_mask, Isa cap) noexcept;

// The variant the dispatched kernels use now.
Isa ActiveIsa() noexcept;
inline const char* ActiveIsaName() noexcept { return IsaName(ActiveIsa()); }

// Caps the choice at `cap` (in addition to QSIG_MAX_ISA) and returns the variant now active.
// SetMaxIsa(Isa::kAvx512Vnni) removes the API cap.
Isa SetMaxIsa(Isa cap) noexcept;

// The cap QSIG_MAX_ISA asks for: kAvx512Vnni if unset or empty, an InvalidArgument error naming
// the variable, the bad value and the accepted names otherwise.
absl::StatusOr<Isa> EnvMaxIsa();

// Human-readable CPU brand string (cpuid leaves 0x80000002..4), e.g. for benchmark context.
const char* CpuBrand();

}  // namespace qsig::quant
