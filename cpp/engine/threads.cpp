#include "engine/threads.hpp"

#include <pthread.h>

#include <atomic>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mm {

namespace {

std::atomic<bool> g_forked{false};

void mark_forked_child() { g_forked.store(true); }

// Registered once, when the module is loaded (static initialisation).
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, mark_forked_child);

void* do_nothing(void*) { return nullptr; }

// Starts and joins up to n threads; returns how many could be started.
int probe_threads(int n) {
    std::vector<pthread_t> ids((size_t)n);
    int started = 0;
    for (; started < n; ++started)
        if (pthread_create(&ids[(size_t)started], nullptr, do_nothing, nullptr) != 0) break;
    for (int i = 0; i < started; ++i) pthread_join(ids[(size_t)i], nullptr);
    return started;
}

}  // namespace

bool in_forked_child() { return g_forked.load(); }

ThreadCount resolve_threads(std::optional<int> requested) {
    (void)g_atfork_registered;
#ifdef _OPENMP
    if (g_forked.load()) return {1, 0, true};
    // omp_get_num_procs() asks the kernel for the affinity mask (a system call,
    // a sizeable part of a small matmul): asked once.
    static const int procs = omp_get_num_procs() > 0 ? omp_get_num_procs() : 1;
    int want = (requested && *requested >= 1) ? *requested : omp_get_max_threads();
    want = want < 1 ? 1 : (want > procs ? procs : want);
    // libgomp keeps a pool per thread that starts parallel regions: a team this
    // thread has had before needs no new threads.
    thread_local int had = 1;
    if (want <= had) return {want, 0, false};
    const int got = 1 + probe_threads(want - 1);
    if (got > had) had = got;
    return {got, got < want ? want : 0, false};
#else
    (void)requested;
    return {1, 0, false};
#endif
}

}  // namespace mm
