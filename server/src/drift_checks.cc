// The periodic drift checks: shadow divergence per model since the last check, input drift over
// the most recent windows, and distribution drift of the features and of the published outputs
// over rows sampled evenly across drift.span_s (DriftMonitor::Evaluate); and the baselines they
// are measured against.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>
#include <vector>

#include "server_impl.h"
#include "server_state.h"

namespace qsig::server {

void ServerState::SetDriftBaseline(size_t m, const std::vector<float>& windows,
                                   const std::vector<float>& clip_lo,
                                   const std::vector<float>& clip_hi, bool settle) {
  const ModelSlot& slot = *slots[m];
  drift[m]->SetBaseline(windows, slot.spec().window, slot.spec().input_size, clip_lo, clip_hi,
                        settle);
}

void ServerState::PersistDriftBaseline(size_t m) {
  if (!state_store) return;
  std::unique_lock<std::timed_mutex> lock(calibration_mu, std::try_to_lock);
  if (!lock.owns_lock()) return;  // An install is writing the state (with the baseline).
  ModelState st = state_store->Get(m);
  st.has_baseline = drift[m]->GetBaseline(&st.baseline);
  (void)state_store->Put(m, std::move(st));
}

void Server::Impl::EvaluateDrift(std::vector<std::pair<double, double>>* last_sums) {
  ServerState& c = state;
  last_sums->resize(c.slots.size());
  // Published outputs since the last evaluation (warm-up and invalid ones excluded).
  recent_outputs.resize(c.slots.size());
  drift_rows_seen.resize(c.slots.size(), 0);
  if (c.output_tap) {
    SignalRecord batch[256];
    for (size_t got; (got = c.output_tap->Pop(batch, 256)) > 0;) {
      for (size_t i = 0; i < got; ++i) {
        const SignalRecord& r = batch[i];
        if (r.model >= recent_outputs.size() || (r.flags & (kSignalWarmup | kSignalInvalid))) {
          continue;
        }
        recent_outputs[r.model].push_back(static_cast<float>(r.value));
      }
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
    // psi / wasserstein: rows and outputs sampled evenly from what arrived since the last
    // evaluation.
    DriftMonitor& d = *c.drift[m];
    const size_t per = d.rows_per_evaluation();
    const uint64_t written = c.store->written(m);
    const std::vector<float> rows = c.store->SampleRows(m, drift_rows_seen[m], per);
    drift_rows_seen[m] = written;
    std::vector<float>& all = recent_outputs[m];
    std::vector<float> outputs;
    for (size_t i = 0, n = std::min(per, all.size()); i < n; ++i) {
      outputs.push_back(all[EvenlySpaced(i, n, all.size())]);
    }
    all.clear();
    if (!c.slots[m]->calibrated()) continue;
    const double rel = d_ref > 0 ? std::sqrt(d_err / d_ref) : -1;
    c.CheckFallback(m, rel);
    // input_drift / saturation look at the newest timestep of the newest drift.window windows:
    // those rows only, not the whole windows.
    const size_t window = static_cast<size_t>(c.config.drift.window);
    d.Evaluate(c.store->SampleRows(m, written > window ? written - window : 0, window), 1, rel,
               rows, outputs);
    if (d.TakeReferenceCompleted()) c.PersistDriftBaseline(m);
  }
}

}  // namespace qsig::server
