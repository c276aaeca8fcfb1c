// CPU feature detection, the ISA caps and the one ordered kernel dispatch table (isa.h,
// kernels.h).
#include "qsig/quant/isa.h"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "internal/kernel_tables.h"
#include "qsig/quant/kernels.h"

namespace qsig::quant {
namespace {

constexpr uint32_t Bit(Isa isa) { return 1u << static_cast<int>(isa); }

// XCR0, the register-state components the OS saves on context switch.
uint64_t Xgetbv0() {
  uint32_t eax = 0;
  uint32_t edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

uint32_t DetectSupportedMask() {
  uint32_t mask = Bit(Isa::kRef);
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7 || !__get_cpuid(1, &a, &b, &c, &d)) return mask;
  const bool fma = (c >> 12) & 1u;  // every AVX2 CPU has it; SLEEF's AVX2 code needs it
  const bool osxsave = (c >> 27) & 1u;
  const bool avx = (c >> 28) & 1u;
  if (!osxsave || !avx) return mask;  // xgetbv itself needs OSXSAVE.
  const uint64_t xcr0 = Xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf = a;
  const bool avx2 = (b >> 5) & 1u;
  const bool avx512f = (b >> 16) & 1u;
  const bool avx512bw = (b >> 30) & 1u;
  const bool avx512vl = (b >> 31) & 1u;
  const bool avx512vnni = (c >> 11) & 1u;
  bool avxvnni = false;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avxvnni = (a >> 4) & 1u;
  }
  if (os_ymm && avx2 && fma) mask |= Bit(Isa::kAvx2);
  if (os_ymm && avx2 && fma && avxvnni) mask |= Bit(Isa::kAvxVnni);
  if (os_zmm && avx2 && fma && avx512f && avx512bw && avx512vl && avx512vnni) {
    mask |= Bit(Isa::kAvx512Vnni);
  }
  return mask;
}

// The dispatch table, most specific first; the first entry the CPU supports within the caps
// wins (ChooseIsa).
struct Entry {
  Isa isa;
  const Kernels& (*table)() noexcept;
};
constexpr Entry kDispatch[kNumIsas] = {
    {Isa::kAvx512Vnni, &internal::Avx512VnniKernels},
    {Isa::kAvxVnni, &internal::AvxVnniKernels},
    {Isa::kAvx2, &internal::Avx2Kernels},
    {Isa::kRef, &RefKernels},
};

constexpr const char* kIsaNames[kNumIsas] = {"ref", "avx2", "avxvnni", "avx512vnni"};

// Probed once; the env cap is read once too (a later setenv has no effect, by design).
struct Probe {
  uint32_t mask;
  absl::StatusOr<Isa> env_cap;
};
const Probe& GetProbe() {
  static const Probe probe = [] {
    Probe p{DetectSupportedMask(), Isa::kAvx512Vnni};
    if (const char* env = std::getenv("QSIG_MAX_ISA"); env != nullptr && *env != '\0') {
      absl::StatusOr<Isa> cap = ParseIsa(env);
      p.env_cap = cap.ok() ? cap
                           : absl::InvalidArgumentError(absl::StrCat(
                                 "environment QSIG_MAX_ISA=\"", env, "\": ", cap.status().message(),
                                 " (unset it for no cap)"));
    }
    return p;
  }();
  return probe;
}

std::atomic<int> g_api_cap{static_cast<int>(Isa::kAvx512Vnni)};
std::atomic<int> g_active{-1};  // -1 until the first selection

Isa Select() noexcept {
  const Probe& probe = GetProbe();
  Isa cap = static_cast<Isa>(g_api_cap.load(std::memory_order_relaxed));
  // An unknown QSIG_MAX_ISA is an error (model builds fail on it); meanwhile the reference runs.
  const Isa env_cap = probe.env_cap.ok() ? *probe.env_cap : Isa::kRef;
  if (env_cap < cap) cap = env_cap;
  const Isa isa = ChooseIsa(probe.mask, cap);
  g_active.store(static_cast<int>(isa), std::memory_order_release);
  return isa;
}

}  // namespace

const char* IsaName(Isa isa) noexcept {
  const int i = static_cast<int>(isa);
  return i >= 0 && i < kNumIsas ? kIsaNames[i] : "unknown";
}

absl::StatusOr<Isa> ParseIsa(std::string_view name_std) {
  const absl::string_view name(name_std.data(), name_std.size());  // absl's is not std's here
  for (int i = 0; i < kNumIsas; ++i) {
    if (absl::EqualsIgnoreCase(name, kIsaNames[i])) return static_cast<Isa>(i);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown ISA \"", name, "\"; expected ref, avx2, avxvnni or avx512vnni (any case)"));
}

uint32_t SupportedIsaMask() noexcept { return GetProbe().mask; }

Isa ChooseIsa(uint32_t supported_mask, Isa cap) noexcept {
  for (const Entry& e : kDispatch) {
    if (e.isa <= cap && (supported_mask & Bit(e.isa)) != 0) return e.isa;
  }
  return Isa::kRef;
}

Isa ActiveIsa() noexcept {
  const int active = g_active.load(std::memory_order_acquire);
  return active >= 0 ? static_cast<Isa>(active) : Select();
}

Isa SetMaxIsa(Isa cap) noexcept {
  g_api_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
  return Select();
}

absl::StatusOr<Isa> EnvMaxIsa() { return GetProbe().env_cap; }

const char* CpuBrand() {
  static const std::string brand = [] {
    unsigned regs[12] = {};
    if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000004u) return std::string("unknown CPU");
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                  &regs[4 * i + 3]);
    }
    char text[49] = {};
    std::memcpy(text, regs, 48);
    std::string s(text);
    const size_t first = s.find_first_not_of(' ');
    return first == std::string::npos ? std::string("unknown CPU") : s.substr(first);
  }();
  return brand.c_str();
}

const Kernels* KernelsFor(Isa isa) noexcept {
  if (!IsaSupported(isa)) return nullptr;
  for (const Entry& e : kDispatch) {
    if (e.isa == isa) return &e.table();
  }
  return nullptr;
}

const Kernels& ActiveKernels() noexcept {
  const Kernels* k = KernelsFor(ActiveIsa());
  return k != nullptr ? *k : RefKernels();
}

}  // namespace qsig::quant
