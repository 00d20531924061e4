// How many OpenMP threads a call gets: the one place that decides it.
//
// - The request, or OpenMP's default (OMP_NUM_THREADS, omp_set_num_threads,
//   threadpoolctl), never more than the processors.
// - In a child made by fork() from a process that had used threads: one.
//   GNU OpenMP is not fork-safe (the child inherits a pool whose threads do not
//   exist, and its first parallel region waits for them forever), so the child
//   runs single-threaded, as PyTorch's does.
// - Never more than the system lets us start: libgomp ends the process when it
//   cannot create a thread (RLIMIT_NPROC, cgroup pids.max), so the first time a
//   thread asks for a team larger than it has had, the threads are started and
//   joined here first; if that fails the call runs with the threads that could
//   be started, and says so (ThreadCount::reduced).
#pragma once

#include <optional>

namespace mm {

struct ThreadCount {
    int threads;   // >= 1
    int reduced;   // 0, or the number asked for when fewer could be started
    bool forked;   // single-threaded because this process is a fork() child
};

ThreadCount resolve_threads(std::optional<int> requested);

// True in a child made by fork() after this module was loaded.
bool in_forked_child();

}  // namespace mm
