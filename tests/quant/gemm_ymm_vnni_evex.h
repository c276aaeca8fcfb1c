// See gemm_ymm_vnni_evex.cc. Callable only where IsaSupported(Isa::kAvx512Vnni).
#pragma once

#include "qsig/quant/gemm.h"

namespace qsig::quant::testing {
const GemmKernels& AvxVnniViaEvexKernels();
}  // namespace qsig::quant::testing
