// The recalibration schedule (calibration.schedule; the calendar is calendar_schedule.h): every
// model once per trading day at a local time. The last run is kept in <state.dir>/.schedule
// (crash-safe write; a name no model folder can have) so that a run missed while the server
// was down runs at the next start within calibration.missed_grace_s; without state.dir it is
// kept in memory only (a start within the grace period then runs, as the last run is unknown).
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "qsig/feeds/clock.h"
#include "server_impl.h"
#include "server_state.h"
#include "spdlog/spdlog.h"
#include "state_store.h"

namespace qsig::server {
namespace {

std::string LastRunPath(const ServerState& c) {
  return c.config.state.dir.empty() ? std::string() : c.config.state.dir + "/.schedule";
}

}  // namespace

void Server::Impl::RunSchedule() {
  ServerState& c = state;
  if (c.config.calibration.schedule.empty()) return;
  const absl::Time now = absl::FromUnixNanos(feeds::WallNanos());
  if (!schedule_ready) {
    schedule_ready = true;
    auto built = CalendarSchedule::FromConfig(c.config.calibration);
    if (!built.ok()) {
      spdlog::error("recalibration schedule off: {}", std::string(built.status().message()));
      return;
    }
    schedule = std::move(*built);
    if (const std::string path = LastRunPath(c); !path.empty()) {
      auto text = ReadWholeFile(path, 64);
      int64_t unix_s = 0;
      if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &unix_s)) {
        schedule_last_run = absl::FromUnixSeconds(unix_s);
      } else if (text.ok()) {
        spdlog::warn("{}: not a last-run time, ignored", path);
      }
    }
    spdlog::info("recalibration schedule: last run {}, next {}",
                 schedule_last_run == absl::InfinitePast() ? "unknown"
                                                           : schedule->Describe(schedule_last_run),
                 schedule->Describe(schedule->NextFire(now)));
  }
  if (!schedule || !schedule->ShouldRun(now, schedule_last_run)) return;
  const absl::Time due = schedule->LatestDue(now);
  if (now - due > absl::Seconds(60)) {
    spdlog::warn("recalibration due at {} was missed (server down); running it now",
                 schedule->Describe(due));
  }
  schedule_last_run = now;
  if (const std::string path = LastRunPath(c); !path.empty()) {
    absl::Status s = MakeDirs(c.config.state.dir);
    if (s.ok()) s = WriteFileAtomic(path, absl::StrCat(absl::ToUnixSeconds(now), "\n"));
    if (!s.ok())
      spdlog::error("cannot record the schedule's last run: {}", std::string(s.message()));
  }
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
  spdlog::info("next scheduled recalibration: {}", schedule->Describe(schedule->NextFire(now)));
}

}  // namespace qsig::server
