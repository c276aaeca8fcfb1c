// The recalibration calendar (calibration.schedule, issue 12): a local time in an IANA time zone,
// on weekdays that are not listed holidays, never inside the trading session; a run missed
// while the server was down runs at the next start within a grace period.
//
// Pure: every decision takes the current instant and the last run as arguments, so a test
// injects time instead of waiting for it. Thread-compatible (const methods only after build).
#pragma once

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "qsig/config/config.h"

namespace qsig::server {

class CalendarSchedule {
 public:
  // From a validated CalibrationConfig (schedule non-empty). Errors name the config key.
  static absl::StatusOr<CalendarSchedule> FromConfig(const config::CalibrationConfig& cal);

  // A weekday that is not a listed holiday.
  bool TradingDay(absl::CivilDay day) const;
  // `t` falls inside the trading session of a trading day (never with no session configured).
  bool InSession(absl::Time t) const;
  // The scheduled instant on `day` (whether or not `day` is a trading day).
  absl::Time DueOn(absl::CivilDay day) const;
  // The first scheduled instant strictly after `t` on a trading day.
  absl::Time NextFire(absl::Time t) const;
  // The last scheduled instant at or before `t` on a trading day (InfinitePast if none within
  // 60 days).
  absl::Time LatestDue(absl::Time t) const;
  // Whether a scheduled run is due at `now` given the last run (InfinitePast = never ran or
  // unknown): the latest due instant is after the last run, `now` is within the window after it
  // (max(missed_grace_s, 60 s): a running server fires within the minute, a restarted one
  // catches up within the grace period) and `now` is outside the trading session.
  bool ShouldRun(absl::Time now, absl::Time last_run) const;

  const absl::TimeZone& zone() const noexcept { return zone_; }
  const std::string& zone_name() const noexcept { return zone_name_; }
  // "YYYY-MM-DD HH:MM Zone (YYYY-MM-DDTHH:MM:SSZ)" for logs.
  std::string Describe(absl::Time t) const;

 private:
  CalendarSchedule() = default;
  int minute_of_day_ = 0;
  absl::TimeZone zone_;
  std::string zone_name_ = "UTC";
  std::set<absl::CivilDay> holidays_;
  int session_open_ = -1, session_close_ = -1;  // Minutes of the day; -1 = no session.
  absl::Duration grace_ = absl::ZeroDuration();
};

}  // namespace qsig::server
