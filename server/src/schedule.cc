// The nightly recalibration schedule (calibration.schedule, "HH:MM" UTC): every model once a day.
#include <cstdint>
#include <string>

#include "qsig/feeds/clock.h"
#include "server_impl.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

void Server::Impl::RunSchedule(int64_t* last_day) {
  ServerState& c = state;
  if (c.config.calibration.schedule.empty()) return;
  const int64_t now_s = feeds::WallNanos() / 1'000'000'000;
  const int64_t day = now_s / 86400;
  const int minute_of_day = static_cast<int>((now_s % 86400) / 60);
  const int hh = std::stoi(c.config.calibration.schedule.substr(0, 2));
  const int mm = std::stoi(c.config.calibration.schedule.substr(3, 2));
  if (*last_day == day || minute_of_day != hh * 60 + mm) return;
  *last_day = day;
  for (size_t m = 0; m < c.slots.size(); ++m) {
    const CalibrationReport r = c.Recalibrate(m, 0, kReasonSchedule);
    if (r.installed) {
      spdlog::info("scheduled recalibration: model {} version {} on {} samples, rel RMSE {:.4f}",
                   r.model, r.version, r.samples,
                   r.fp32_rms > 0 ? r.validation_rmse / r.fp32_rms : 0.0);
    } else {
      spdlog::error("scheduled recalibration: model {} kept its previous version: {}", r.model,
                    r.message);
    }
  }
}

}  // namespace qsig::server
