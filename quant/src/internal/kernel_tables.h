// The per-ISA kernel tables, for the dispatch table in isa.cc (and quant/testing). Each table is
// defined in its own file, compiled with that ISA's flags (quant/CMakeLists.txt): calling into
// one on a CPU that lacks the ISA is undefined, so only KernelsFor() (which checks the probe)
// hands them out.
#pragma once

#include "qsig/quant/kernels.h"

namespace qsig::quant::internal {

// AVX-512 VNNI: avx512f/bw/vl/vnni + FMA, ZMM state enabled (kernels_avx512_vnni.cc).
const Kernels& Avx512VnniKernels() noexcept;
// AVX-VNNI: AVX2 + FMA + AVX-VNNI (VEX vpdpbusd on ymm), YMM state enabled (kernels_avx_vnni.cc).
const Kernels& AvxVnniKernels() noexcept;
// AVX2: AVX2 + FMA, YMM state enabled (kernels_avx2.cc).
const Kernels& Avx2Kernels() noexcept;

}  // namespace qsig::quant::internal
