// Where the qsig-torch helper executable is: the LibTorch half of qsig (training, QAT,
// TorchScript import), kept out of the server's process. Thread-safety: reentrant.
#pragma once

#include <string>

namespace qsig::models::io {

// $QSIG_TORCH_TOOL if set, else qsig-torch beside the running executable, else the first
// qsig-torch on $PATH; "" if there is none (qsig built without LibTorch).
std::string FindTorchTool();

}  // namespace qsig::models::io
