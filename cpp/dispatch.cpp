// Picks the widest kernel set the CPU supports, once; tests may force another.
#include <atomic>
#include <cstring>
#include <new>

#include "kernels.hpp"

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

}  // namespace

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
