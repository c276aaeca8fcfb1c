// Stand-in for torch_peer.cc when qsig is built without LibTorch (QSIG_WITH_TORCH=OFF).
#include "torch_peer.h"

namespace qsig::models::bench {

std::unique_ptr<TorchPeer> MakeTorchPeer(const ModelSpec&, std::string* why) {
  if (why) *why = "built with QSIG_WITH_TORCH=OFF";
  return nullptr;
}

std::string TorchDescription() { return "not built (QSIG_WITH_TORCH=OFF)"; }

}  // namespace qsig::models::bench
