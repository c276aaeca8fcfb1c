#include "runtime_capability.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace qsig::server {
namespace {

struct Status {
  std::atomic<int> mlock_errno{-1};  // -1 = not requested, 0 = locked, else errno.
  std::atomic<int> tick_threads{0}, pin_requested{0}, pin_failed{0};
  std::atomic<int> rt_requested{0}, rt_failed{0}, rt_errno{0};
};

Status& Global() {
  static Status s;
  return s;
}

// The tick threads' configured CPUs.
std::vector<int> TickCores(const config::Config& c) {
  std::vector<int> cores;
  if (c.pipeline.mode == "run_to_completion") {
    cores = c.pipeline.cores;
  } else {
    cores = c.workers.cores;
    if (c.feed.core >= 0) cores.push_back(c.feed.core);
  }
  return cores;
}

// /sys/devices/system/cpu/isolated: a CPU list such as "2-5,8" (empty = none).
std::set<int> IsolatedCpus() {
  std::set<int> out;
  std::ifstream in("/sys/devices/system/cpu/isolated");
  std::string text;
  std::getline(in, text);
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const std::vector<absl::string_view> r = absl::StrSplit(part, '-');
    int lo = 0, hi = 0;
    if (!absl::SimpleAtoi(r[0], &lo)) continue;
    hi = lo;
    if (r.size() == 2 && !absl::SimpleAtoi(r[1], &hi)) continue;
    for (int c = lo; c <= hi && c - lo < 4096; ++c) out.insert(c);
  }
  return out;
}

}  // namespace

void ApplyProcessRuntime(const config::Config& config) {
  if (!config.runtime.lock_memory) return;
  Global().mlock_errno.store(mlockall(MCL_CURRENT | MCL_FUTURE) == 0 ? 0 : errno);
}

void ApplyTickThreadRuntime(const config::RuntimeConfig& runtime, int core, bool pinned) {
  Status& s = Global();
  s.tick_threads.fetch_add(1);
  if (core >= 0) {
    s.pin_requested.fetch_add(1);
    if (!pinned) s.pin_failed.fetch_add(1);
  }
  if (runtime.realtime_priority > 0) {
    s.rt_requested.fetch_add(1);
    sched_param p{};
    p.sched_priority = runtime.realtime_priority;
    const int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p);
    if (rc != 0) {
      s.rt_failed.fetch_add(1);
      s.rt_errno.store(rc);
    }
  }
}

int TickThreadsStarted() { return Global().tick_threads.load(); }

std::vector<RuntimeCapability> RuntimeCapabilities(const config::Config& config) {
  const Status& s = Global();
  std::vector<RuntimeCapability> out;
  const std::vector<int> cores = TickCores(config);
  {
    RuntimeCapability c{"pinning", false, ""};
    if (cores.empty()) {
      c.detail = "no cores configured (workers.cores / pipeline.cores)";
    } else if (s.pin_requested.load() == 0) {
      c.detail = "tick threads not started";
    } else if (s.pin_failed.load() > 0) {
      c.detail = absl::StrCat(s.pin_failed.load(), " of ", s.pin_requested.load(),
                              " tick threads could not be pinned (cpuset?)");
    } else {
      c.in_effect = true;
      c.detail = absl::StrCat("tick threads on cores ", absl::StrJoin(cores, ","));
    }
    out.push_back(c);
  }
  {
    RuntimeCapability c{"mlockall", false, ""};
    const int e = s.mlock_errno.load();
    if (e < 0) {
      c.detail = "not requested (runtime.lock_memory)";
    } else if (e > 0) {
      c.detail = absl::StrCat("mlockall refused: ", std::strerror(e),
                              " (needs CAP_IPC_LOCK or ulimit -l unlimited)");
    } else {
      c.in_effect = true;
      c.detail = "all memory locked";
    }
    out.push_back(c);
  }
  {
    RuntimeCapability c{"realtime", false, ""};
    if (config.runtime.realtime_priority <= 0) {
      c.detail = "not requested (runtime.realtime_priority)";
    } else if (s.rt_requested.load() == 0) {
      c.detail = "tick threads not started";
    } else if (s.rt_failed.load() > 0) {
      c.detail = absl::StrCat("SCHED_FIFO refused: ", std::strerror(s.rt_errno.load()),
                              " (needs CAP_SYS_NICE or an rtprio limit)");
    } else {
      c.in_effect = true;
      c.detail =
          absl::StrCat("tick threads SCHED_FIFO priority ", config.runtime.realtime_priority);
    }
    out.push_back(c);
  }
  {
    RuntimeCapability c{"isolated_cpus", false, ""};
    const std::set<int> isolated = IsolatedCpus();
    std::vector<int> not_isolated;
    for (int core : cores) {
      if (!isolated.count(core)) not_isolated.push_back(core);
    }
    if (cores.empty()) {
      c.detail = "no cores configured";
    } else if (!not_isolated.empty()) {
      c.detail = absl::StrCat("cores ", absl::StrJoin(not_isolated, ","),
                              " are not in /sys/devices/system/cpu/isolated (isolcpus=)");
    } else {
      c.in_effect = true;
      c.detail = absl::StrCat("cores ", absl::StrJoin(cores, ","), " isolated");
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace qsig::server
