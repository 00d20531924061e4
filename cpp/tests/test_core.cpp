// Native test driver for the C++ core, without Python: built with
// -DMNIST_MLP_BUILD_CTEST=ON (the sanitizer job builds it with ASan + UBSan).
// Exits non-zero on the first failed check.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "data/idx.hpp"
#include "kernels/kernels.hpp"
#include "engine/mlp.hpp"
#include "data/nonzero_index.hpp"

using namespace mm;

static int failures = 0;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            std::fprintf(stderr, __VA_ARGS__);            \
            std::fprintf(stderr, "\n");                   \
            ++failures;                                   \
        }                                                 \
    } while (0)

template <class T>
static void test_gemm(const char* isa, std::mt19937& rng) {
    const Kernels<T>* k = get_kernels<T>(isa);
    if (!k) return;
    std::normal_distribution<double> nd;
    const int sizes[] = {1, 3, 7, 9, 16, 33, 65, 130, 300};
    for (int m : sizes)
        for (int n : {1, 10, 33, 300})
            for (int kk : {1, 8, 33, 257})
                for (int ta = 0; ta < 2; ++ta)
                    for (int tb = 0; tb < 2; ++tb) {
                        std::vector<T> a((size_t)m * kk), b((size_t)kk * n), c((size_t)m * n), r((size_t)m * n);
                        for (auto& v : a) v = (T)nd(rng);
                        for (auto& v : b) v = (T)nd(rng);
                        GemmJob<T> g{m, n, kk, a.data(), ta ? m : kk, ta != 0, b.data(), tb ? kk : n, tb != 0,
                                     c.data(), n, 2};
                        k->gemm(g);
                        g.c = r.data();
                        k->gemm_naive(g);
                        double err = 0, scale = 1;
                        for (size_t i = 0; i < c.size(); ++i) {
                            err = std::fmax(err, std::fabs((double)c[i] - (double)r[i]));
                            scale = std::fmax(scale, std::fabs((double)r[i]));
                        }
                        const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
                        CHECK(err <= tol * scale, "%s gemm m=%d n=%d k=%d ta=%d tb=%d err=%g", isa, m, n, kk, ta, tb,
                              err);
                    }
}

static void test_idx() {
    // A good file, then every kind of damage: each must throw IdxError, never crash.
    std::vector<uint8_t> good = {0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    {
        auto src = open_idx_memory(good.data(), good.size(), "good");
        IdxHeader h = read_idx_header(*src, "good");
        std::vector<uint8_t> out(h.data_bytes);
        read_idx_body(*src, h, out.data(), "good");
        CHECK(h.dims.size() == 2 && out[5] == 6, "good IDX misread");
    }
    std::vector<std::vector<uint8_t>> bad = {
        {},
        {0, 0, 0x08},
        {1, 0, 0x08, 1, 0, 0, 0, 1, 7},
        {0, 0, 0x07, 1, 0, 0, 0, 1, 7},
        {0, 0, 0x08, 0},
        {0, 0, 0x08, 2, 0, 0, 0, 2},
        {0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2},
        {0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2},
        {0, 0, 0x0E, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255},
        {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3},
    };
    for (size_t i = 0; i < bad.size(); ++i) {
        bool threw = false;
        try {
            auto src = open_idx_memory(bad[i].data(), bad[i].size(), "bad");
            IdxHeader h = read_idx_header(*src, "bad");
            std::vector<uint8_t> out(h.data_bytes);
            read_idx_body(*src, h, out.data(), "bad");
        } catch (const IdxError&) {
            threw = true;
        }
        CHECK(threw, "malformed IDX case %zu was accepted", i);
    }
}

template <class T>
static void test_training(const char* isa) {
    const Kernels<T>* k = get_kernels<T>(isa);
    if (!k) return;
    const int64_t n = 203, d = 50;
    std::mt19937 rng(1);
    std::vector<uint8_t> x((size_t)(n * d));
    for (auto& v : x) v = (rng() % 3 == 0) ? (uint8_t)(rng() % 256) : 0;
    std::vector<int32_t> y((size_t)n);
    for (auto& v : y) v = (int32_t)(rng() % 4);
    InputView xv{x.data(), InputType::u8, n, d, d, 1};
    NonzeroIndexData index(xv, 2);
    NonzeroIndex nzv = index.view();
    for (int hidden : {1, 17, 40}) {
        for (int64_t batch : {1, 8, 100}) {
            for (bool use_index : {false, true}) {
                Model<T> a({d, hidden, 4}), b({d, hidden, 4});
                std::normal_distribution<double> nd;
                for (int l = 0; l < 2; ++l)
                    for (int64_t i = 0; i < a.sizes()[l] * a.sizes()[l + 1]; ++i)
                        a.weight(l)[i] = b.weight(l)[i] = (T)(nd(rng) * 0.3);
                TrainJob<T> ja{a.view(), xv, y.data(), nullptr, n, batch, (T)0.1, true, true, nullptr, nullptr};
                ja.nthreads = 2;
                if (use_index) ja.nz = &nzv;
                TrainJob<T> jb{b.view(), xv, y.data(), nullptr, n, batch, (T)0.1, false, true, nullptr, nullptr};
                jb.nthreads = 1;
                k->train_epoch(ja);
                k->train_epoch(jb);
                CHECK(ja.batches_done == (n + batch - 1) / batch, "batches_done %lld", (long long)ja.batches_done);
                double diff = 0, scale = 0;
                for (int l = 0; l < 2; ++l)
                    for (int64_t i = 0; i < a.sizes()[l] * a.sizes()[l + 1]; ++i) {
                        diff = std::fmax(diff, std::fabs((double)a.weight(l)[i] - (double)b.weight(l)[i]));
                        scale = std::fmax(scale, std::fabs((double)b.weight(l)[i]));
                    }
                CHECK(diff <= (sizeof(T) == 4 ? 1e-4 : 1e-9) * scale, "%s sparse/2 threads vs dense/1 thread: %g",
                      isa, diff);
                EvalJob<T> e{a.view(), xv, y.data(), nullptr, n, 2};
                std::vector<T> probs((size_t)(n * 4));
                e.probs = probs.data();
                k->evaluate(e);
                CHECK(std::isfinite(e.loss_sum) && e.correct >= 0 && e.correct <= n, "evaluate");
            }
        }
    }
}

int main() {
    std::mt19937 rng(0);
    for (const char* isa : {"generic", "avx2", "avx512"}) {
        test_gemm<float>(isa, rng);
        test_gemm<double>(isa, rng);
        test_training<float>(isa);
        test_training<double>(isa);
    }
    test_idx();
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_core: all checks passed (best ISA: %s)\n", best_isa());
    return 0;
}
