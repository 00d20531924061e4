// A minimal GNU OpenMP runtime for the ThreadSanitizer build only
// (-DMNIST_MLP_TSAN=ON), never for the wheel.
//
// libgomp hands work between threads through futexes and spinning that
// ThreadSanitizer cannot see (libgomp is not built with it), so under TSan
// every write before a parallel region's end and read after it looks like a
// race. GCC lowers the OpenMP constructs this project uses (parallel with
// num_threads and if, for schedule(static), single, barrier, reductions on
// atomics) to the seven entry points below; implemented here on std::thread,
// std::mutex and std::condition_variable, which TSan understands, the races it
// reports are ours. One new team of threads per parallel region: slow, and
// only meant for tests.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace {

struct Team {
    unsigned n = 1;
    std::mutex m;
    std::condition_variable cv;
    unsigned arrived = 0;
    unsigned long generation = 0;
    std::atomic<unsigned long> singles{0};  // single constructs claimed so far

    void barrier() {
        std::unique_lock<std::mutex> lock(m);
        const unsigned long g = generation;
        if (++arrived == n) {
            arrived = 0;
            ++generation;
            cv.notify_all();
        } else {
            cv.wait(lock, [&] { return generation != g; });
        }
    }
};

struct ThreadState {
    Team* team = nullptr;
    unsigned id = 0;
    unsigned long singles_seen = 0;
};

thread_local ThreadState tls;

int procs() {
    const long p = sysconf(_SC_NPROCESSORS_ONLN);
    return p > 0 ? (int)p : 1;
}

int default_threads() {
    static const int n = [] {
        const char* env = std::getenv("OMP_NUM_THREADS");
        const int v = env ? std::atoi(env) : 0;
        return v > 0 ? v : procs();
    }();
    return n;
}

}  // namespace

extern "C" {

int omp_get_num_procs() { return procs(); }
int omp_get_max_threads() { return default_threads(); }
int omp_get_thread_num() { return tls.team ? (int)tls.id : 0; }
int omp_get_num_threads() { return tls.team ? (int)tls.team->n : 1; }

void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned /*flags*/) {
    // Nested regions (none in this project) run with one thread.
    const unsigned n = tls.team ? 1u : (num_threads ? num_threads : (unsigned)default_threads());
    Team team;
    team.n = n;
    const ThreadState outer = tls;
    std::vector<std::thread> workers;
    workers.reserve(n - 1);
    for (unsigned i = 1; i < n; ++i)
        workers.emplace_back([&team, fn, data, i] {
            tls = ThreadState{&team, i, 0};
            fn(data);
        });
    tls = ThreadState{&team, 0, 0};
    fn(data);
    for (std::thread& t : workers) t.join();
    tls = outer;
}

void GOMP_barrier() {
    if (tls.team) tls.team->barrier();
}

// True for the first thread of the team to reach each single construct.
bool GOMP_single_start() {
    if (!tls.team) return true;
    unsigned long expected = tls.singles_seen++;
    return tls.team->singles.compare_exchange_strong(expected, expected + 1);
}

}  // extern "C"
