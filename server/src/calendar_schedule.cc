// The recalibration calendar (calendar_schedule.h).
#include "calendar_schedule.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace qsig::server {
namespace {

constexpr int kSearchDays = 60;  // Longer than any run of weekends and holidays.

// "HH:MM" as minutes of the day, or -1.
int Clock(absl::string_view s) {
  int hh = -1, mm = -1;
  if (s.size() != 5 || s[2] != ':' || !absl::SimpleAtoi(s.substr(0, 2), &hh) ||
      !absl::SimpleAtoi(s.substr(3, 2), &mm) || hh < 0 || hh > 23 || mm < 0 || mm > 59) {
    return -1;
  }
  return hh * 60 + mm;
}

}  // namespace

absl::StatusOr<CalendarSchedule> CalendarSchedule::FromConfig(
    const config::CalibrationConfig& cal) {
  CalendarSchedule s;
  const absl::string_view text = cal.schedule;
  s.minute_of_day_ = Clock(text.substr(0, 5));
  if (s.minute_of_day_ < 0 || (text.size() > 5 && text[5] != ' ')) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration.schedule: expected HH:MM [Area/City], got '", text, "'"));
  }
  std::string zone = cal.schedule_tz;
  if (text.size() > 5) zone = std::string(absl::StripAsciiWhitespace(text.substr(6)));
  if (zone.empty()) zone = "UTC";
  if (!absl::LoadTimeZone(zone, &s.zone_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(cal.schedule_tz.empty() ? "calibration.schedule" : "calibration.schedule_tz",
                     ": unknown IANA time zone '", zone, "'"));
  }
  s.zone_name_ = zone;
  for (const std::string& h : cal.holidays) {
    absl::CivilDay day;
    if (!absl::ParseCivilTime(h, &day)) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration.holidays_file: expected YYYY-MM-DD, got '", h, "'"));
    }
    s.holidays_.insert(day);
  }
  if (!cal.session.empty()) {
    const absl::string_view sess = cal.session;
    s.session_open_ = Clock(sess.substr(0, 5));
    s.session_close_ = sess.size() == 11 && sess[5] == '-' ? Clock(sess.substr(6)) : -1;
    if (s.session_open_ < 0 || s.session_close_ <= s.session_open_) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration.session: expected HH:MM-HH:MM, got '", sess, "'"));
    }
  }
  s.grace_ = absl::Seconds(cal.missed_grace_s);
  return s;
}

bool CalendarSchedule::TradingDay(absl::CivilDay day) const {
  const absl::Weekday w = absl::GetWeekday(day);
  if (w == absl::Weekday::saturday || w == absl::Weekday::sunday) return false;
  return !holidays_.contains(day);
}

bool CalendarSchedule::InSession(absl::Time t) const {
  if (session_open_ < 0) return false;
  const absl::CivilMinute local = absl::ToCivilMinute(t, zone_);
  if (!TradingDay(absl::CivilDay(local))) return false;
  const int minute = local.hour() * 60 + local.minute();
  return minute >= session_open_ && minute < session_close_;
}

absl::Time CalendarSchedule::DueOn(absl::CivilDay day) const {
  const absl::CivilMinute at(day.year(), day.month(), day.day(), minute_of_day_ / 60,
                             minute_of_day_ % 60);
  return absl::FromCivil(at, zone_);
}

absl::Time CalendarSchedule::NextFire(absl::Time t) const {
  const absl::CivilDay today = absl::ToCivilDay(t, zone_);
  for (int d = 0; d <= kSearchDays; ++d) {
    const absl::CivilDay day = today + d;
    if (!TradingDay(day)) continue;
    const absl::Time due = DueOn(day);
    if (due > t) return due;
  }
  return absl::InfiniteFuture();
}

absl::Time CalendarSchedule::LatestDue(absl::Time t) const {
  const absl::CivilDay today = absl::ToCivilDay(t, zone_);
  for (int d = 0; d <= kSearchDays; ++d) {
    const absl::CivilDay day = today - d;
    if (!TradingDay(day)) continue;
    const absl::Time due = DueOn(day);
    if (due <= t) return due;
  }
  return absl::InfinitePast();
}

bool CalendarSchedule::ShouldRun(absl::Time now, absl::Time last_run) const {
  const absl::Time due = LatestDue(now);
  if (due == absl::InfinitePast() || last_run >= due) return false;
  if (now - due > std::max(grace_, absl::Seconds(60))) return false;
  return !InSession(now);
}

std::string CalendarSchedule::Describe(absl::Time t) const {
  if (t == absl::InfiniteFuture()) return "never";
  return absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M %Z", t, zone_), " ", zone_name_, " (",
                      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()), ")");
}

}  // namespace qsig::server
