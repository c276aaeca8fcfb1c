// The periodic drift checks: shadow divergence per model since the last check, input and
// distribution drift over the most recent windows, and output drift over the most recent
// published signals (DriftMonitor::Evaluate); and the baselines they are measured against.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>
#include <utility>
#include <vector>

#include "qsig/models/evaluation.h"
#include "server_impl.h"
#include "server_state.h"

namespace qsig::server {

void ServerState::SetDriftBaseline(size_t m, const std::vector<float>& windows,
                                   const std::vector<float>& clip_lo,
                                   const std::vector<float>& clip_hi) {
  const ModelSlot& slot = *slots[m];
  const int window = slot.spec().window, input = slot.spec().input_size;
  drift[m]->SetBaseline(windows, window, input, clip_lo, clip_hi);
  const std::shared_ptr<const Installed> cur = slot.Acquire();
  const models::Model* serving = cur->int8 ? cur->int8.get() : cur->fp32.get();
  const size_t stride = static_cast<size_t>(window) * input;
  const size_t n = stride ? windows.size() / stride : 0;
  if (!serving || n < DistributionReference::kMinRows) return;
  // Time a few windows first so a large model's reference stays within budget.
  constexpr size_t kProbe = 16;
  const auto t0 = std::chrono::steady_clock::now();
  const std::span<const float> all(windows);
  std::vector<float> probe = models::RunAll(*serving, all.subspan((n - kProbe) * stride));
  const double per = std::max(
      1e-9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kProbe);
  const size_t rows =
      std::clamp<size_t>(static_cast<size_t>(0.25 / per), DistributionReference::kMinRows,
                         std::min(n, DistributionReference::kMaxRows));
  std::vector<float> outputs =
      rows > kProbe ? models::RunAll(*serving, all.subspan((n - rows) * stride)) : std::move(probe);
  drift[m]->SetOutputBaseline(std::move(outputs));
}

void Server::Impl::EvaluateDrift(std::vector<std::pair<double, double>>* last_sums) {
  ServerState& c = state;
  last_sums->resize(c.slots.size());
  // The newest drift.window published outputs per model (warm-up and invalid ones excluded).
  const size_t keep = static_cast<size_t>(c.config.drift.window);
  c.recent_outputs.resize(c.slots.size());
  if (c.output_tap) {
    SignalRecord batch[256];
    for (size_t got; (got = c.output_tap->Pop(batch, 256)) > 0;) {
      for (size_t i = 0; i < got; ++i) {
        const SignalRecord& r = batch[i];
        if (r.model >= c.recent_outputs.size() || (r.flags & (kSignalWarmup | kSignalInvalid))) {
          continue;
        }
        c.recent_outputs[r.model].push_back(static_cast<float>(r.value));
      }
    }
    for (auto& o : c.recent_outputs) {
      if (o.size() > keep) o.erase(o.begin(), o.end() - static_cast<std::ptrdiff_t>(keep));
    }
  }
  for (size_t m = 0; m < c.slots.size(); ++m) {
    double err = 0, ref = 0;
    for (const auto& w : c.workers) {
      err += w->shadow(m).squared_error_sum.Get();
      ref += w->shadow(m).fp32_squared_sum.Get();
    }
    const double d_err = err - (*last_sums)[m].first, d_ref = ref - (*last_sums)[m].second;
    (*last_sums)[m] = {err, ref};
    if (!c.slots[m]->calibrated()) continue;
    const double rel = d_ref > 0 ? std::sqrt(d_err / d_ref) : -1;
    c.CheckFallback(m, rel);
    c.drift[m]->Evaluate(c.store->Recent(m, keep), c.slots[m]->spec().window, rel,
                         c.recent_outputs[m]);
  }
}

}  // namespace qsig::server
