// For tests only (target qsig::quant_testing): the AVX-VNNI kernels built with the EVEX
// (AVX512-VL + AVX512-VNNI) encodings of vpdpbusd / vpdpwssd on ymm, so that the VNNI flavour of
// quant/src/internal/kernels_ymm.inc runs on AVX-512 hosts without AVX-VNNI (Zen 4). The
// arithmetic is identical; only the instruction encoding differs from the production table.
#pragma once

#include "qsig/quant/kernels.h"

namespace qsig::quant::testing {

// The table (isa kAvxVnni), or nullptr unless this CPU and OS run AVX-512 VNNI.
const Kernels* AvxVnniViaEvexKernels() noexcept;

}  // namespace qsig::quant::testing
