// What the machine actually grants the tick path, as opposed to what the config asks for:
// CPU pinning, locked memory (mlockall), real-time scheduling and isolated CPUs. A container
// started without --cpuset-cpus, IPC_LOCK or SYS_NICE still runs, but an operator must see at
// once that it is mis-deployed: each is logged at start and exported as
// qsig_runtime_capability{kind} (1 = in effect, 0 = not).
// Thread-safety: the Note* functions may be called from any thread; Snapshot from any thread.
#pragma once

#include <string>
#include <vector>

#include "qsig/config/config.h"

namespace qsig::server {

struct RuntimeCapability {
  std::string kind;  // pinning, mlockall, realtime, isolated_cpus
  bool in_effect = false;
  std::string detail;  // Why, for the log.
};

// At start, before any tick thread: mlockall when runtime.lock_memory is set.
void ApplyProcessRuntime(const config::Config& config);
// On each tick thread after it pinned itself (or tried to): records the pinning result and,
// with runtime.realtime_priority > 0, switches the thread to SCHED_FIFO at that priority.
void ApplyTickThreadRuntime(const config::RuntimeConfig& runtime, int core, bool pinned);
// Tick threads that have called ApplyTickThreadRuntime.
int TickThreadsStarted();
// The four capabilities as they stand now (after the tick threads started).
std::vector<RuntimeCapability> RuntimeCapabilities(const config::Config& config);

}  // namespace qsig::server
