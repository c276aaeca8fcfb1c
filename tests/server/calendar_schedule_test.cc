// The recalibration calendar (issue 12 item 5): a local time in an IANA zone fires at the right
// UTC instant in winter and summer, skips weekends and listed holidays, stays out of the
// trading session, and a run missed while the server was down fires at start within the grace
// period. Time is injected; nothing waits.
#include "calendar_schedule.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "qsig/config/config.h"

namespace qsig::server {
namespace {

absl::Time Utc(int y, int mo, int d, int h, int mi, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

CalendarSchedule NewYork(double grace_s) {
  config::CalibrationConfig cal;
  cal.schedule = "17:30 America/New_York";
  cal.session = "09:30-16:00";
  cal.holidays = {"2026-01-19", "2026-07-03"};  // MLK Day (Monday), Independence Day observed.
  cal.missed_grace_s = grace_s;
  auto s = CalendarSchedule::FromConfig(cal);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

TEST(CalendarScheduleTest, LocalTimeFiresAtTheRightUtcInstantInWinterAndSummer) {
  const CalendarSchedule s = NewYork(0);
  // EST (UTC-5): Wednesday 14 January 2026, 17:30 local = 22:30 UTC.
  EXPECT_EQ(s.NextFire(Utc(2026, 1, 14, 12, 0)), Utc(2026, 1, 14, 22, 30));
  // EDT (UTC-4): Wednesday 1 July 2026, 17:30 local = 21:30 UTC.
  EXPECT_EQ(s.NextFire(Utc(2026, 7, 1, 12, 0)), Utc(2026, 7, 1, 21, 30));
  // Strictly after: at the instant itself the next one is the following day.
  EXPECT_EQ(s.NextFire(Utc(2026, 7, 1, 21, 30)), Utc(2026, 7, 2, 21, 30));
  // The same schedule split over schedule + schedule_tz is the same calendar.
  config::CalibrationConfig split;
  split.schedule = "17:30";
  split.schedule_tz = "America/New_York";
  auto t = CalendarSchedule::FromConfig(split);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->NextFire(Utc(2026, 1, 14, 12, 0)), Utc(2026, 1, 14, 22, 30));
  // The plain form stays UTC.
  config::CalibrationConfig utc;
  utc.schedule = "17:30";
  auto u = CalendarSchedule::FromConfig(utc);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->NextFire(Utc(2026, 7, 1, 12, 0)), Utc(2026, 7, 1, 17, 30));
}

TEST(CalendarScheduleTest, SkipsWeekendsAndListedHolidays) {
  const CalendarSchedule s = NewYork(0);
  // After Thursday 2 July's run: Friday 3 July is a holiday, then the weekend: Monday 6 July.
  EXPECT_EQ(s.NextFire(Utc(2026, 7, 2, 22, 0)), Utc(2026, 7, 6, 21, 30));
  // After Friday 16 January: weekend, then Monday 19 January (holiday): Tuesday 20 January.
  EXPECT_EQ(s.NextFire(Utc(2026, 1, 16, 23, 0)), Utc(2026, 1, 20, 22, 30));
  EXPECT_FALSE(s.TradingDay(absl::CivilDay(2026, 7, 3)));
  EXPECT_FALSE(s.TradingDay(absl::CivilDay(2026, 7, 4)));  // Saturday.
  EXPECT_TRUE(s.TradingDay(absl::CivilDay(2026, 7, 2)));
  // A running server on the holiday at 17:30 local does not run.
  EXPECT_FALSE(s.ShouldRun(Utc(2026, 7, 3, 21, 30, 5), absl::InfinitePast()));
  EXPECT_EQ(s.LatestDue(Utc(2026, 7, 3, 21, 30, 5)), Utc(2026, 7, 2, 21, 30));
  EXPECT_FALSE(s.ShouldRun(Utc(2026, 7, 3, 21, 30, 5), Utc(2026, 7, 2, 21, 30, 1)));
}

TEST(CalendarScheduleTest, RunsOnceWithinTheMinuteAndNeverInsideTheSession) {
  const CalendarSchedule s = NewYork(0);
  const absl::Time due = Utc(2026, 7, 1, 21, 30);
  const absl::Time yesterday = Utc(2026, 6, 30, 21, 30, 1);
  EXPECT_FALSE(s.ShouldRun(due - absl::Seconds(1), yesterday));
  EXPECT_TRUE(s.ShouldRun(due, yesterday));
  EXPECT_TRUE(s.ShouldRun(due + absl::Seconds(20), yesterday));
  EXPECT_FALSE(s.ShouldRun(due + absl::Seconds(21), due + absl::Seconds(20)));  // Ran already.
  EXPECT_FALSE(s.ShouldRun(due + absl::Minutes(5), yesterday));  // No grace: missed is missed.
  // Session 09:30-16:00 New York = 13:30-20:00 UTC in July.
  EXPECT_TRUE(s.InSession(Utc(2026, 7, 1, 13, 30)));
  EXPECT_FALSE(s.InSession(Utc(2026, 7, 1, 20, 0)));
  EXPECT_FALSE(s.InSession(Utc(2026, 7, 3, 15, 0)));  // Holiday: no session.
}

TEST(CalendarScheduleTest, MissedRunFiresAtStartWithinTheGracePeriod) {
  const CalendarSchedule s = NewYork(3600);
  const absl::Time due = Utc(2026, 7, 1, 21, 30);
  const absl::Time last = Utc(2026, 6, 30, 21, 30, 2);      // Tuesday's run; down over Wednesday's.
  EXPECT_TRUE(s.ShouldRun(due + absl::Minutes(40), last));  // Start 40 min late: runs.
  EXPECT_FALSE(s.ShouldRun(due + absl::Minutes(61), last));  // Beyond the grace period.
  EXPECT_FALSE(s.ShouldRun(due + absl::Minutes(40), due + absl::Seconds(3)));  // Not missed.
  // A long grace period never catches up inside the session: start Thursday 10:00 New York
  // (in session) waits; at 16:30 (after the close, before Thursday's own run) it runs.
  const CalendarSchedule day = NewYork(86400);
  EXPECT_FALSE(day.ShouldRun(Utc(2026, 7, 2, 14, 0), last));
  EXPECT_TRUE(day.ShouldRun(Utc(2026, 7, 2, 20, 30), last));
  // Never ran (memory only, nothing known): a start within the grace period runs.
  EXPECT_TRUE(s.ShouldRun(due + absl::Minutes(10), absl::InfinitePast()));
}

TEST(CalendarScheduleTest, ConfigReadsTheHolidayFile) {
  const std::string path = ::testing::TempDir() + "/holidays_" + std::to_string(getpid());
  {
    std::ofstream f(path);
    f << "# NYSE 2026\n2026-01-19\n\n2026-07-03  # observed\n";
  }
  auto c = config::ParseConfig(
      "calibration:\n  schedule: '17:30'\n  schedule_tz: America/New_York\n  holidays_file: " +
          path + "\n  session: '09:30-16:00'\n  missed_grace_s: 600\n",
      "t.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->calibration.holidays, (std::vector<std::string>{"2026-01-19", "2026-07-03"}));
  {
    std::ofstream f(path);
    f << "2026-13-40\n";
  }
  auto bad = config::ParseConfig(
      "calibration:\n  schedule: '17:30'\n  holidays_file: " + path + "\n", "t.yaml", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("calibration.holidays_file"), std::string::npos)
      << bad.status();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace qsig::server
