// Picks the widest kernel set the CPU supports, once; tests may force another.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/kernels.hpp"

namespace mm {

void throw_bad_alloc() { throw std::bad_alloc(); }

namespace {

bool cpu_has(const char* isa) {
    if (std::strcmp(isa, "generic") == 0) return true;
#if defined(MNIST_MLP_X86_DISPATCH)
    __builtin_cpu_init();
    if (std::strcmp(isa, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (std::strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return false;
}

std::atomic<const char*> forced{nullptr};

template <class T> const Kernels<T>* table(const char* isa);
template <> const Kernels<float>* table<float>(const char* isa) {
#if defined(MNIST_MLP_X86_DISPATCH)
    if (std::strcmp(isa, "avx512") == 0) return &avx512::kernels_f32;
    if (std::strcmp(isa, "avx2") == 0) return &avx2::kernels_f32;
#endif
    (void)isa;
    return &generic::kernels_f32;
}
template <> const Kernels<double>* table<double>(const char* isa) {
#if defined(MNIST_MLP_X86_DISPATCH)
    if (std::strcmp(isa, "avx512") == 0) return &avx512::kernels_f64;
    if (std::strcmp(isa, "avx2") == 0) return &avx2::kernels_f64;
#endif
    (void)isa;
    return &generic::kernels_f64;
}

// /sys/devices/system/cpu/cpu0/cache/index*/ of the given level and a data or
// unified type: its size ("48K", "2048K", "32M"), or 0.
int64_t sysfs_cache(int level) {
    for (int i = 0; i < 8; ++i) {
        char path[96];
        auto read = [&](const char* leaf, char* buf, size_t n) {
            std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, leaf);
            FILE* f = std::fopen(path, "r");
            if (!f) return false;
            const bool ok = std::fgets(buf, (int)n, f) != nullptr;
            std::fclose(f);
            return ok;
        };
        char lv[16], type[32], size[32];
        if (!read("level", lv, sizeof lv) || std::atoi(lv) != level) continue;
        if (!read("type", type, sizeof type) || std::strncmp(type, "Instruction", 11) == 0) continue;
        if (!read("size", size, sizeof size)) continue;
        char* end = nullptr;
        int64_t v = std::strtoll(size, &end, 10);
        if (end && (*end == 'K' || *end == 'k')) v <<= 10;
        else if (end && (*end == 'M' || *end == 'm')) v <<= 20;
        if (v > 0) return v;
    }
    return 0;
}
// The kernel's view first (sysfs: what lscpu prints), then glibc's sysconf
// (which reads CPUID itself, and was seen to report 320 MiB of L3 in a VM whose
// sysfs said 32 MiB), then the fallback.
int64_t detect_cache(int level, int64_t fallback) {
    const int64_t s = sysfs_cache(level);
    if (s > 0) return s;
    long v = -1;
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    const int name = level == 1 ? _SC_LEVEL1_DCACHE_SIZE : level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE;
    v = sysconf(name);
#endif
    return v > 0 ? v : fallback;
}
}  // namespace

const CacheSizes& cache_sizes() {
    static const CacheSizes c{detect_cache(1, 32 << 10), detect_cache(2, 512 << 10), detect_cache(3, 8 << 20)};
    return c;
}

const char* best_isa() {
    static const char* best = cpu_has("avx512") ? "avx512" : cpu_has("avx2") ? "avx2" : "generic";
    return best;
}

const char* current_isa() {
    const char* f = forced.load();
    return f ? f : best_isa();
}

bool set_isa(const char* isa) {
    if (!isa || !*isa) { forced.store(nullptr); return true; }
    static const char* const names[] = {"generic", "avx2", "avx512"};
    for (const char* n : names)
        if (std::strcmp(isa, n) == 0) {
            if (!cpu_has(n)) return false;
            forced.store(n);
            return true;
        }
    return false;
}

template <class T>
const Kernels<T>* get_kernels(const char* isa) {
    if (!isa) isa = current_isa();
    if (!cpu_has(isa)) return nullptr;
    return table<T>(isa);
}
template const Kernels<float>* get_kernels<float>(const char*);
template const Kernels<double>* get_kernels<double>(const char*);

}  // namespace mm
