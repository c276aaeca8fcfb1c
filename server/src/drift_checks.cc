// The periodic drift checks: shadow divergence per model since the last check, and input drift
// over the most recent windows (DriftMonitor::Evaluate).
#include <cmath>
#include <utility>
#include <vector>

#include "server_impl.h"
#include "server_state.h"

namespace qsig::server {

void Server::Impl::EvaluateDrift(std::vector<std::pair<double, double>>* last_sums) {
  ServerState& c = state;
  last_sums->resize(c.slots.size());
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
    c.drift[m]->Evaluate(c.store->Recent(m, static_cast<size_t>(c.config.drift.window)),
                         c.slots[m]->spec().window, rel);
  }
}

}  // namespace qsig::server
