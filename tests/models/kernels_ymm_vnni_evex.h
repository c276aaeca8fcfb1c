// See kernels_ymm_vnni_evex.cc. Callable only where internal::Avx512VnniKernels() is non-null.
#pragma once

#include "internal/kernels.h"

namespace qsig::models::testing {

// The AVX-VNNI kernels (kernels_ymm.inc, VNNI flavour) with the EVEX encodings of vpdpbusd /
// vpdpwssd on ymm (AVX512-VL + AVX512-VNNI); isa "avxvnni-evex".
const internal::Kernels& AvxVnniViaEvexKernels() noexcept;

}  // namespace qsig::models::testing
