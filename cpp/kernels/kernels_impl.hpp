// The hot kernels: GEMM, the forward pass, and (through the includes below
// the GEMM) the training engine and its stage kernels in kernels/ and engine/.
//
// This file is included by kernels_{generic,avx2,avx512}.cpp inside namespace
// mm::<isa>, after <cstdint>, <cstdlib>, <cstring>, <cmath> and <omp.h>, with
// MM_VBYTES set to the vector width (16, 32, 64 bytes). It must not use std::
// templates or inline library code: an out-of-line copy compiled with -mavx512f
// could be picked by the linker for the generic build. Plain loops, malloc, and
// GCC vector extensions only.
//
// Memory layout, stated once: every matrix is row-major. A layer's weight is
// (fan_in, fan_out), so a forward pass is out = inp . W + b with one contiguous
// W row per input feature, which is what lets a zero input skip a whole row.

#ifndef MM_VBYTES
#error "define MM_VBYTES before including kernels_impl.hpp"
#endif

typedef float vfloat __attribute__((vector_size(MM_VBYTES)));
typedef double vdouble __attribute__((vector_size(MM_VBYTES)));
template <class T> struct VecOf;
template <> struct VecOf<float> { typedef vfloat type; };
template <> struct VecOf<double> { typedef vdouble type; };

#include "kernels/vec.inc"

template <class T> static inline T tmax(T a, T b) { return a > b ? a : b; }
template <class T> static inline T tmin(T a, T b) { return a < b ? a : b; }
static inline float t_exp(float x) { return expf(x); }
static inline double t_exp(double x) { return exp(x); }
static inline float t_log(float x) { return logf(x); }
static inline double t_log(double x) { return log(x); }

static inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static inline int num_procs() {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}
static inline int team_size() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

// Scratch memory without std::vector (see the header comment): 64-byte aligned,
// freed on scope exit, so kernels neither leak nor share buffers between threads.
struct Scratch {
    void* p = nullptr;
    // Zero bytes: no allocation and a null pointer (ops.matmul's small products
    // would otherwise pay a malloc and a free for an unused buffer).
    explicit Scratch(size_t bytes) {
        if (bytes == 0) return;
        p = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!p) throw_bad_alloc();
    }
    ~Scratch() { free(p); }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    template <class U> U* as() const { return static_cast<U*>(p); }
};

// ---------------------------------------------------------------------------
// GEMM. C (m x n) = op(A) (m x k) . op(B) (k x n).
// Five loops as in BLIS: jc over NC columns (B panel in L3), pc over KC of the
// inner dimension (packed B panel), ic over MC rows (packed A block in L2), then
// jr/ir over NR x MR micro-tiles computed in registers by micro_kernel.

constexpr int MR = MM_VBYTES == 64 ? 12 : 6;          // rows of a micro-tile
template <class T> constexpr int NR = 2 * MM_VBYTES / (int)sizeof(T);  // two vectors wide

// The block sizes, from the detected caches (BLIS's analytical model): a B
// sliver (KC x NR) stays in L1 while the A slivers of a block stream past it,
// the packed A block (MC x KC) stays in L2, and the packed B panel (KC x NC)
// in L3. MNIST_MLP_GEMM_BLOCKS="kc,mc,nc" overrides them (for benchmarks).
struct GemmBlocks {
    int64_t kc, mc, nc;
};
template <class T>
static GemmBlocks derive_gemm_blocks() {
    constexpr int64_t s = (int64_t)sizeof(T), nr = NR<T>;
    const CacheSizes& c = cache_sizes();
    auto clamp = [](int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; };
    GemmBlocks b;
    // The fractions leave room for what else each level holds (C's tiles, the
    // next slivers, the other thread's data in a shared L3); on a 32 KiB L1,
    // 1 MiB L2 and 32 MiB L3 they give KC 256, MC 120, NC 4096 for floats.
    b.kc = clamp(c.l1 / (nr * s) / 16 * 16, 64, 1024);                    // the B sliver fills L1
    b.mc = clamp(c.l2 / 8 / (b.kc * s) / MR * MR, MR, 64 * MR);           // the A block an eighth of L2
    b.nc = clamp(c.l3 / 8 / (b.kc * s) / nr * nr, nr, int64_t(1) << 16);  // the B panel an eighth of L3
    const char* env = getenv("MNIST_MLP_GEMM_BLOCKS");
    long kc = 0, mc = 0, nc = 0;
    if (env && sscanf(env, "%ld,%ld,%ld", &kc, &mc, &nc) == 3 && kc > 0 && mc > 0 && nc > 0) {
        b.kc = kc;
        b.mc = (mc + MR - 1) / MR * MR;
        b.nc = (nc + nr - 1) / nr * nr;
    }
    return b;
}
template <class T>
static const GemmBlocks& gemm_blocks() {
    static const GemmBlocks b = derive_gemm_blocks<T>();
    return b;
}

template <class T>
static inline T a_at(const GemmJob<T>& g, int64_t i, int64_t p) {
    return g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
}
template <class T>
static inline T b_at(const GemmJob<T>& g, int64_t p, int64_t j) {
    return g.trans_b ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j];
}

// Reference and fallback: i-p-j order so the inner loop runs along a C row.
template <class T>
static void gemm_naive_t(const GemmJob<T>& g) {
    for (int64_t i = 0; i < g.m; ++i) {
        T* c = g.c + i * g.ldc;
        for (int64_t j = 0; j < g.n; ++j) c[j] = 0;
        for (int64_t p = 0; p < g.k; ++p) {
            const T a = a_at(g, i, p);
            if (!g.trans_b) {
                const T* b = g.b + p * g.ldb;
                for (int64_t j = 0; j < g.n; ++j) c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < g.n; ++j) c[j] += a * g.b[j * g.ldb + p];
            }
        }
    }
}

// t (k x ldt) = the transpose of b (n x k, leading dimension ldb). Float blocks
// of 8 x 8 go through registers (where the compiler has __builtin_shufflevector):
// a scalar copy of a small B cost a third of an 8x10.(300x10)^T product.
template <class T>
static void transpose_scalar(T* t, int64_t ldt, const T* b, int64_t ldb, int64_t j0, int64_t n, int64_t p0,
                             int64_t k) {
    for (int64_t j = j0; j < n; ++j)
        for (int64_t p = p0; p < k; ++p) t[p * ldt + j] = b[j * ldb + p];
}
template <class T>
static void transpose_small(T* t, int64_t ldt, const T* b, int64_t ldb, int64_t n, int64_t k) {
    transpose_scalar(t, ldt, b, ldb, 0, n, 0, k);
}
#if defined(__clang__) || __GNUC__ >= 12
typedef float mm_f8 __attribute__((vector_size(32)));
static inline void transpose8(mm_f8* r) {
    mm_f8 t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4)
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
            u[i + 2 * h] = __builtin_shufflevector(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * h + 1] = __builtin_shufflevector(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
        r[q] = __builtin_shufflevector(u[q], u[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[q + 4] = __builtin_shufflevector(u[q], u[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}
// Rows [j0, j0 + 8) by columns [p0, p0 + 8) of B into t, of whose transpose
// only the last KEEP rows are stored. KEEP is a constant so that the shuffles
// feeding the other rows drop out (10 instead of 24 for KEEP = 2).
template <int KEEP>
static inline void transpose8_block(float* t, int64_t ldt, const float* b, int64_t ldb, int64_t j0, int64_t p0) {
    mm_f8 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) __builtin_memcpy(&r[i], b + (j0 + i) * ldb + p0, sizeof(mm_f8));
    transpose8(r);
#pragma GCC unroll 8
    for (int q = 8 - KEEP; q < 8; ++q) __builtin_memcpy(t + (p0 + q) * ldt + j0, &r[q], sizeof(mm_f8));
}
// Rows [j0, j0 + 8) of B, all k columns: whole 8 x 8 blocks, then the block
// that ends at column k, of which only the last k mod 8 rows of the transpose
// are new (or element by element when k < 8).
static void transpose8_rows(float* t, int64_t ldt, const float* b, int64_t ldb, int64_t j0, int64_t k) {
    const int64_t k8 = k / 8 * 8;
    for (int64_t p0 = 0; p0 < k8; p0 += 8) transpose8_block<8>(t, ldt, b, ldb, j0, p0);
    if (k8 == k) return;
    if (k < 8) return transpose_scalar(t, ldt, b, ldb, j0, j0 + 8, 0, k);
    switch (k - k8) {
        case 1: transpose8_block<1>(t, ldt, b, ldb, j0, k - 8); break;
        case 2: transpose8_block<2>(t, ldt, b, ldb, j0, k - 8); break;
        case 3: transpose8_block<3>(t, ldt, b, ldb, j0, k - 8); break;
        case 4: transpose8_block<4>(t, ldt, b, ldb, j0, k - 8); break;
        case 5: transpose8_block<5>(t, ldt, b, ldb, j0, k - 8); break;
        case 6: transpose8_block<6>(t, ldt, b, ldb, j0, k - 8); break;
        default: transpose8_block<7>(t, ldt, b, ldb, j0, k - 8); break;
    }
}
template <>
void transpose_small<float>(float* t, int64_t ldt, const float* b, int64_t ldb, int64_t n, int64_t k) {
    const int64_t n8 = n / 8 * 8;
    for (int64_t j0 = 0; j0 < n8; j0 += 8) transpose8_rows(t, ldt, b, ldb, j0, k);
    if (n8 == n) return;
    // The last rows: the 8-row block that ends at row n (its first rows are
    // written again, with the same values), or element by element when n < 8.
    if (n >= 8) transpose8_rows(t, ldt, b, ldb, n - 8, k);
    else transpose_scalar(t, ldt, b, ldb, 0, n, 0, k);
}
#endif
// t (k x width) = the transpose of b (n x k, leading dimension ldb), its
// columns past n zero: packed slivers and transposed copies padded to whole
// register blocks.
template <class T>
static void transpose_padded(T* t, int64_t width, const T* b, int64_t ldb, int64_t n, int64_t k) {
    transpose_small(t, width, b, ldb, n, k);
    if (n < width)
        for (int64_t p = 0; p < k; ++p)
            for (int64_t j = n; j < width; ++j) t[p * width + j] = T(0);
}

// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of op(A) into MR-row slivers,
// zero-padding the last sliver so the micro-kernel never reads past the edge.
template <class T>
static void pack_a(T* dst, const GemmJob<T>& g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                   int64_t sliver_begin, int64_t sliver_end) {
    for (int64_t s = sliver_begin; s < sliver_end; ++s) {
        T* d = dst + s * MR * kc;
        const int64_t ib = i0 + s * MR;
        const int64_t rows = tmin<int64_t>(MR, i0 + mc - ib);
        if (!g.trans_a) {
            // The sliver is the transpose of A's rows [ib, ib + rows), columns [p0, p0 + kc):
            // float blocks of 8 x 8 through registers, as pack_b's transposed B (element by
            // element it took 4% of a 784-1024-1024-10 epoch at batch 256).
            transpose_padded(d, MR, g.a + ib * g.lda + p0, g.lda, rows, kc);
        } else {
            for (int64_t p = 0; p < kc; ++p) {
                const T* src = g.a + (p0 + p) * g.lda + ib;
                for (int r = 0; r < MR; ++r) d[p * MR + r] = r < rows ? src[r] : T(0);
            }
        }
    }
}

// Packs depth [p0, p0+kc) x columns [j0, j0+nc) of op(B) into NR-column slivers.
template <class T>
static void pack_b(T* dst, const GemmJob<T>& g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   int64_t sliver) {
    constexpr int nr = NR<T>;
    T* d = dst + sliver * nr * kc;
    const int64_t jb = j0 + sliver * nr;
    const int64_t cols = tmin<int64_t>(nr, j0 + nc - jb);
    if (!g.trans_b) {
        for (int64_t p = 0; p < kc; ++p) {
            const T* src = g.b + (p0 + p) * g.ldb + jb;
            if (cols == nr) {
                __builtin_memcpy(d + p * nr, src, sizeof(T) * nr);  // a whole sliver row: vector moves
            } else {
                for (int c = 0; c < nr; ++c) d[p * nr + c] = c < cols ? src[c] : T(0);
            }
        }
    } else {
        // The sliver is the transpose of B's rows [jb, jb + cols), columns [p0, p0 + kc):
        // float blocks of 8 x 8 through registers (transpose_small); column by column
        // it cost 13% of a 256x1024.(1024x1024)^T product, writing 4 bytes to each of
        // kc lines per column.
        transpose_padded(d, nr, g.b + jb * g.ldb + p0, g.ldb, cols, kc);
    }
}

// MR x NR tile of C from packed slivers. `first` overwrites C (the first depth
// block), otherwise it accumulates; `scaled` stores C + alpha * tile (the one
// depth block of an accumulating product). Edge tiles go through a local buffer.
template <class T>
static inline void micro_kernel(int64_t kc, const T* __restrict ap, const T* __restrict bp, T* c,
                                int64_t ldc, int rows, int cols, bool first, bool scaled = false, T alpha = T(1)) {
    typedef typename VecOf<T>::type V;
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    constexpr int nr = NR<T>;
    V acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) { acc0[r] = V{}; acc1[r] = V{}; }
    // C's tile is read and written once, after the loop; a large C is not in
    // cache by then (each depth block sweeps all of it), and its lines missed
    // one by one at the end stalled each call. Asked for now, they arrive while
    // the tile's multiply-adds run.
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
        if (r < rows) {
            __builtin_prefetch(c + r * ldc, 1);
            __builtin_prefetch(c + r * ldc + cols - 1, 1);
        }
    for (int64_t p = 0; p < kc; ++p) {
        V b0, b1;
        __builtin_memcpy(&b0, bp, sizeof(V));
        __builtin_memcpy(&b1, bp + L, sizeof(V));
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            const T a = ap[r];
            acc0[r] += a * b0;
            acc1[r] += a * b1;
        }
        ap += MR;
        bp += nr;
    }
    if (rows == MR && cols == nr) {
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
            T* cr = c + r * ldc;
            if (!first || scaled) {
                V c0, c1;
                __builtin_memcpy(&c0, cr, sizeof(V));
                __builtin_memcpy(&c1, cr + L, sizeof(V));
                if (scaled) {
                    acc0[r] = c0 + alpha * acc0[r];
                    acc1[r] = c1 + alpha * acc1[r];
                } else {
                    acc0[r] += c0;
                    acc1[r] += c1;
                }
            }
            __builtin_memcpy(cr, &acc0[r], sizeof(V));
            __builtin_memcpy(cr + L, &acc1[r], sizeof(V));
        }
        return;
    }
    alignas(64) T tile[MR * nr];
    for (int r = 0; r < MR; ++r) {
        __builtin_memcpy(tile + r * nr, &acc0[r], sizeof(V));
        __builtin_memcpy(tile + r * nr + L, &acc1[r], sizeof(V));
    }
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j)
            c[r * ldc + j] = scaled  ? c[r * ldc + j] + alpha * tile[r * nr + j]
                             : first ? tile[r * nr + j]
                                     : c[r * ldc + j] + tile[r * nr + j];
}

// The jr/ir loops over one packed A block and one packed B panel.
template <class T>
static void macro_kernel(const GemmJob<T>& g, const T* ap, const T* bp, int64_t ic, int64_t mc,
                         int64_t jc, int64_t nc, int64_t kc, bool first, int64_t jr_begin,
                         int64_t jr_end) {
    constexpr int nr = NR<T>;
    for (int64_t js = jr_begin; js < jr_end; ++js) {
        const int64_t j = js * nr;
        const int cols = (int)tmin<int64_t>(nr, nc - j);
        for (int64_t i = 0; i < mc; i += MR) {
            const int rows = (int)tmin<int64_t>(MR, mc - i);
            micro_kernel<T>(kc, ap + i * kc, bp + js * nr * kc, g.c + (ic + i) * g.ldc + jc + j, g.ldc,
                            rows, cols, first, first && g.accumulate, g.alpha);
        }
    }
}

// Columns [j0, j1) of C on one thread: the jc/pc/ic loops with its own packed
// B panel (bp: kcap x ncap) and A block (ap: kcap x mcap).
template <class T>
static void gemm_blocked_cols(const GemmJob<T>& g, int64_t j0, int64_t j1, int64_t KC, int64_t NC, int64_t MC,
                              T* ap, T* bp) {
    constexpr int nr = NR<T>;
    for (int64_t jc = j0; jc < j1; jc += NC) {
        const int64_t nc = tmin<int64_t>(NC, j1 - jc);
        const int64_t nslivers = (nc + nr - 1) / nr;
        for (int64_t pc = 0; pc < g.k; pc += KC) {
            const int64_t kc = tmin<int64_t>(KC, g.k - pc);
            for (int64_t s = 0; s < nslivers; ++s) pack_b(bp, g, pc, kc, jc, nc, s);
            for (int64_t ic = 0; ic < g.m; ic += MC) {
                const int64_t mc = tmin<int64_t>(MC, g.m - ic);
                pack_a(ap, g, ic, mc, pc, kc, 0, (mc + MR - 1) / MR);
                macro_kernel(g, ap, bp, ic, mc, jc, nc, kc, pc == 0, 0, nslivers);
            }
        }
    }
}

template <class T>
static void gemm_blocked_t(const GemmJob<T>& g) {
    if (g.m <= 0 || g.n <= 0) return;
    if (g.k <= 0) {
        for (int64_t i = 0; i < g.m; ++i)
            for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] = 0;
        return;
    }
    constexpr int nr = NR<T>;
    const GemmBlocks& blk = gemm_blocks<T>();
    const int nt = g.nthreads > 0 ? g.nthreads : 1;
    const int64_t KC = blk.kc, NC = blk.nc;
    const int64_t kcap = tmin<int64_t>(KC, g.k);
    const int64_t nslivers_all = (g.n + nr - 1) / nr;
    // Wide enough C: each thread takes its own columns (whole slivers) and runs
    // the blocked loops on them alone, with its own packed B panel and A blocks.
    // No barrier at all: the shared B panel of the row split below needs two per
    // depth block, and waiting at them cost 2048^3 its two-thread scaling (1.88x
    // against OpenBLAS's 1.98x). Each thread packs A for itself, a copy of m x k
    // per thread against 2 m n k / nt flops. Which thread computes a column
    // changes no sum (the same depth blocks, in the same order).
    if (nt > 1 && nslivers_all >= (int64_t)nt * 4) {
        const int64_t MC = tmin<int64_t>(blk.mc, (g.m + MR - 1) / MR * MR);
        const int64_t per = (nslivers_all + nt - 1) / nt;
        const int64_t ncap = tmin<int64_t>(NC, per * nr);
        const size_t a_elems = (size_t)(kcap * MC), b_elems = (size_t)(kcap * ncap);
        // Allocated here, not in the region, so that a failure throws to the caller.
        Scratch pack(sizeof(T) * (a_elems + b_elems) * (size_t)nt);
#pragma omp parallel num_threads(nt)
        {
            const int t = thread_id(), team = team_size();
            T* ap = pack.as<T>() + (a_elems + b_elems) * (size_t)t;
            const int64_t s0 = nslivers_all * t / team, s1 = nslivers_all * (t + 1) / team;
            if (s1 > s0) gemm_blocked_cols(g, s0 * nr, tmin<int64_t>(s1 * nr, g.n), KC, NC, MC, ap, ap + a_elems);
        }
        return;
    }
    // Row blocks of at most blk.mc rows, as many as a multiple of the threads
    // when there are enough rows for each thread, so that no thread waits on
    // another's extra block (which rows a block holds changes no sum).
    int64_t m_blocks = (g.m + blk.mc - 1) / blk.mc;
    if (g.m >= nt * MR && m_blocks % nt) {
        // Fewer, larger blocks if they stay within 1.5 x MC; else more, smaller.
        const int64_t down = m_blocks / nt * nt;
        m_blocks = down > 0 && 2 * ((g.m + down - 1) / down) <= 3 * blk.mc ? down : (m_blocks + nt - 1) / nt * nt;
    }
    const int64_t MC = ((g.m + m_blocks - 1) / m_blocks + MR - 1) / MR * MR;
    m_blocks = (g.m + MC - 1) / MC;
    const int64_t ncap = tmin<int64_t>(NC, (g.n + nr - 1) / nr * nr);
    const int64_t mcap = tmin<int64_t>(MC, (g.m + MR - 1) / MR * MR);
    if (nt == 1) {
        Scratch pack(sizeof(T) * (size_t)(kcap * (mcap + ncap)));
        gemm_blocked_cols(g, 0, g.n, KC, NC, MC, pack.as<T>(), pack.as<T>() + kcap * mcap);
        return;
    }
    // Narrow C (a few slivers): the threads share each packed B panel, and split
    // the row blocks, or with few row blocks each A block's columns.
    const bool split_rows = m_blocks >= nt;
    const int64_t a_elems = kcap * mcap;
    Scratch bpack(sizeof(T) * (size_t)(kcap * ncap));
    Scratch apack(sizeof(T) * (size_t)(a_elems * (split_rows ? nt : 1)));
    T* bp = bpack.as<T>();
#pragma omp parallel num_threads(nt)
    {
        T* ap = apack.as<T>() + (split_rows ? thread_id() * a_elems : 0);
        for (int64_t jc = 0; jc < g.n; jc += NC) {
            const int64_t nc = tmin<int64_t>(NC, g.n - jc);
            const int64_t nslivers = (nc + nr - 1) / nr;
            for (int64_t pc = 0; pc < g.k; pc += KC) {
                const int64_t kc = tmin<int64_t>(KC, g.k - pc);
                const bool first = pc == 0;
#pragma omp for schedule(static)
                for (int64_t s = 0; s < nslivers; ++s) pack_b(bp, g, pc, kc, jc, nc, s);
                if (split_rows) {
#pragma omp for schedule(static)
                    for (int64_t ib = 0; ib < m_blocks; ++ib) {
                        const int64_t ic = ib * MC;
                        const int64_t mc = tmin<int64_t>(MC, g.m - ic);
                        pack_a(ap, g, ic, mc, pc, kc, 0, (mc + MR - 1) / MR);
                        macro_kernel(g, ap, bp, ic, mc, jc, nc, kc, first, 0, nslivers);
                    }
                } else {
                    for (int64_t ic = 0; ic < g.m; ic += MC) {
                        const int64_t mc = tmin<int64_t>(MC, g.m - ic);
                        const int64_t a_slivers = (mc + MR - 1) / MR;
#pragma omp for schedule(static)
                        for (int64_t s = 0; s < a_slivers; ++s) pack_a(ap, g, ic, mc, pc, kc, s, s + 1);
#pragma omp for schedule(static)
                        for (int64_t s = 0; s < nslivers; ++s)
                            macro_kernel(g, ap, bp, ic, mc, jc, nc, kc, first, s, s + 1);
                    }
                }
            }
        }
    }
}

// Few rows of C (a batch of 8, say): no packing at all. For each block of
// SMALL_NV vectors of C's columns, all rows' accumulators stay in registers
// while p runs over the inner dimension, so B is streamed through once.
constexpr int SMALL_M = MM_VBYTES == 64 ? 8 : 4;  // rows per register block
constexpr int SMALL_NV = 2;                       // vectors of columns per register block
// Up to this depth a product of any height skips packing: op(B) is k rows,
// small enough to stay in L1 while every row block of A streams past it.
constexpr int64_t SMALL_K = 16;
// Products of up to FEW_ROWS rows (a batch), and weight gradients of up to
// FEW_DEPTH samples, skip packing too when B fits in L2: B then streams
// from L2 once per row block, which costs less than packing it at this height.
constexpr int64_t FEW_ROWS = 128;
constexpr int64_t FEW_DEPTH = 256;
// The unpacked kernels sum at most this many products in one accumulator
// before adding the partial sum to a total (a numerical bound, not a cache
// size: the same on every CPU, so results do not depend on the machine).
constexpr int64_t kSumDepth = 1024;

// Rows [i0, i0 + RM) of op(A) times NV vectors of B's columns, into c (leading
// dimension ldc). B's rows p < psplit are read at b + p * ldb, the rest at
// b2 + (p - psplit) * ldb2 (a padded copy of the last rows, for the last
// columns: see gemm_small_m).
template <class T, int RM, int NV, bool TA>
static inline void small_block_t(const GemmJob<T>& g, const T* b, int64_t ldb, int64_t psplit, const T* b2,
                                 int64_t ldb2, int64_t i0, T* c, int64_t ldc) {
    typedef typename VecOf<T>::type V;
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    V acc[RM][NV];
#pragma GCC unroll 16
    for (int r = 0; r < RM; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = V{};
    auto step = [&](int64_t p, const T* brow) {
        V bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) __builtin_memcpy(&bv[v], brow + v * L, sizeof(V));
#pragma GCC unroll 16
        for (int r = 0; r < RM; ++r) {
            const T a = TA ? g.a[p * g.lda + i0 + r] : g.a[(i0 + r) * g.lda + p];
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[r][v] += a * bv[v];
        }
    };
    auto steps = [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < tmin(p1, psplit); ++p) step(p, b + p * ldb);
        for (int64_t p = tmax(p0, psplit); p < p1; ++p) step(p, b2 + (p - psplit) * ldb2);
    };
    if (g.k <= kSumDepth) {
        steps(0, g.k);
    } else {
        // A deep product sums kSumDepth terms at a time in registers and adds
        // those partial sums in a separate total, as the blocked path adds its
        // KC blocks into C: one float32 accumulator over 2^25 ones would stop
        // at 2^24. (The total lives on the stack: the registers hold acc.)
        T tot[RM * NV * L];
        for (int64_t p0 = 0; p0 < g.k; p0 += kSumDepth) {
            steps(p0, tmin(g.k, p0 + kSumDepth));
            for (int r = 0; r < RM; ++r)
                for (int v = 0; v < NV; ++v) {
                    V t = acc[r][v];
                    if (p0) {
                        V prev;
                        __builtin_memcpy(&prev, tot + (r * NV + v) * L, sizeof(V));
                        t += prev;
                    }
                    __builtin_memcpy(tot + (r * NV + v) * L, &t, sizeof(V));
                    acc[r][v] = V{};
                }
        }
        for (int r = 0; r < RM; ++r)
            for (int v = 0; v < NV; ++v) __builtin_memcpy(&acc[r][v], tot + (r * NV + v) * L, sizeof(V));
    }
    if (g.accumulate) {
        // C := C + alpha * op(A) op(B): c is C itself here (gemm_small_m_nv
        // computes an accumulating tail into a tile with accumulate off).
        const T alpha = g.alpha;
#pragma GCC unroll 16
        for (int r = 0; r < RM; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) {
                V cv;
                __builtin_memcpy(&cv, c + r * ldc + v * L, sizeof(V));
                acc[r][v] = cv + alpha * acc[r][v];
            }
    }
#pragma GCC unroll 16
    for (int r = 0; r < RM; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
#if MM_VBYTES == 64 && (defined(__clang__) || __GNUC__ >= 12)
            // Two 256-bit stores: C's rows are seldom 64-byte aligned (1200
            // bytes apart for n = 300), and a 512-bit store across two cache
            // lines cost more (3% of (8x784)^T.8x300).
            if constexpr (sizeof(T) == 4) {
                typedef float H __attribute__((vector_size(32)));
                const H lo = __builtin_shufflevector(acc[r][v], acc[r][v], 0, 1, 2, 3, 4, 5, 6, 7);
                const H hi = __builtin_shufflevector(acc[r][v], acc[r][v], 8, 9, 10, 11, 12, 13, 14, 15);
                __builtin_memcpy(c + r * ldc + v * L, &lo, 32);
                __builtin_memcpy(c + r * ldc + v * L + 8, &hi, 32);
                continue;
            }
#endif
            __builtin_memcpy(c + r * ldc + v * L, &acc[r][v], sizeof(V));
        }
}

template <class T, int RM, int NV>
static inline void small_block(const GemmJob<T>& g, const T* b, int64_t ldb, int64_t psplit, const T* b2,
                               int64_t ldb2, int64_t i0, T* c, int64_t ldc) {
    if (g.trans_a)
        small_block_t<T, RM, NV, true>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
    else
        small_block_t<T, RM, NV, false>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
}

template <class T, int NV>
static void small_block_rows(int64_t rows, const GemmJob<T>& g, const T* b, int64_t ldb, int64_t psplit,
                             const T* b2, int64_t ldb2, int64_t i0, T* c, int64_t ldc) {
    switch (rows) {
        case 1: return small_block<T, 1, NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 2: return small_block<T, 2, NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 3: return small_block<T, 3, NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 4: return small_block<T, 4, NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 5: return small_block<T, (SMALL_M > 4 ? 5 : 1), NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 6: return small_block<T, (SMALL_M > 4 ? 6 : 1), NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        case 7: return small_block<T, (SMALL_M > 4 ? 7 : 1), NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
        default: return small_block<T, SMALL_M, NV>(g, b, ldb, psplit, b2, ldb2, i0, c, ldc);
    }
}

// C = op(A) . B for few rows, B row-major (k x n) with leading dimension ldb.
// b_padded: B's rows hold whole vectors (zeros past n).
template <class T, int NV>
static void gemm_small_m_nv(const GemmJob<T>& g, const T* b, int64_t ldb, bool b_padded) {
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    constexpr int64_t W = NV * L;
    const int64_t n_full = g.n / W * W;
    const int64_t tail = g.n - n_full;
    // The last columns that do not fill a register block take as few vectors
    // as hold them. When C is at least that wide, their tile is shifted left to
    // end at column n: it recomputes a few columns of the tile before it (the
    // same sums in the same order) and stores whole vectors in place, with no
    // copy of B or of the tile. Narrower products read B in place where a
    // vector ends inside it (lanes past n only reach lanes of the tile that are
    // not kept) and the last rows of B from a zero-padded copy.
    const int tail_nv = (int)((tail + L - 1) / L);
    const int64_t wt = tail_nv * L;
    // (Not when accumulating: the columns the shifted tile shares would be added twice.)
    const bool shifted = tail && g.n >= wt && !g.accumulate;
    const int64_t tail0 = shifted ? g.n - wt : n_full;  // the tail tile's first column
    int64_t psplit = g.k;  // rows of B whose last vector is read in place
    if (tail && !shifted && !b_padded) {
        // row p's vector ends at p * ldb + tail0 + wt, inside B while that is at most (k - 1) * ldb + n
        const int64_t room = (g.k - 1) * ldb + g.n - tail0 - wt;
        psplit = room < 0 ? 0 : tmin<int64_t>(g.k, room / ldb + 1);
    }
    T pad[W * W];  // k - psplit <= ceil((wt - tail) / ldb) <= wt - tail < W rows of wt <= W
    for (int64_t p = psplit; p < g.k; ++p)
        for (int64_t j = 0; j < wt; ++j) pad[(p - psplit) * wt + j] = j < tail ? b[p * ldb + tail0 + j] : T(0);
    // Tiles (a row block by a register block of columns, the last one maybe
    // narrower) are independent: split between threads when the caller allows
    // and there are several. Row-major tile order gives each thread whole row
    // blocks when there are many, and a share of the columns of a batch of 8.
    // Each tile is the same arithmetic whatever the thread count. A region with
    // if(false) still costs a team's setup: one thread calls the loop itself.
    const int64_t nblk = (g.m + SMALL_M - 1) / SMALL_M;
    const int64_t ncb = n_full / W + (tail ? 1 : 0);
    auto last_cols = [&](const GemmJob<T>& gj, int64_t rows, int64_t i0, const T* bb, int64_t ps, T* c,
                         int64_t ldc) {
        if (tail_nv == 1)
            small_block_rows<T, 1>(rows, gj, bb, ldb, ps, pad, wt, i0, c, ldc);
        else if (tail_nv == 2 || NV == 2)
            small_block_rows<T, 2>(rows, gj, bb, ldb, ps, pad, wt, i0, c, ldc);
        else
            small_block_rows<T, NV>(rows, gj, bb, ldb, ps, pad, wt, i0, c, ldc);
    };
    // The narrow tail's tile holds op(A) op(B) alone; it is then added into C.
    GemmJob<T> g_tile = g;
    g_tile.accumulate = false;
    // Tiles [u0, u1) in row-major order (counters, not a division per tile).
    auto tiles = [&](int64_t u0, int64_t u1) {
        int64_t ib = u0 / ncb, cb = u0 % ncb;
        for (int64_t u = u0; u < u1; ++u) {
            const int64_t i0 = ib * SMALL_M, j0 = cb * W;
            const int64_t rows = tmin<int64_t>(SMALL_M, g.m - i0);
            if (j0 < n_full) {
                small_block_rows<T, NV>(rows, g, b + j0, ldb, g.k, nullptr, 0, i0, g.c + i0 * g.ldc + j0, g.ldc);
            } else if (shifted) {
                last_cols(g, rows, i0, b + g.n - wt, g.k, g.c + i0 * g.ldc + g.n - wt, g.ldc);
            } else {
                T tile[SMALL_M * W];
                last_cols(g_tile, rows, i0, b + tail0, psplit, tile, W);
                T* ct = g.c + i0 * g.ldc + tail0;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t j = 0; j < tail; ++j)
                        ct[r * g.ldc + j] = g.accumulate ? ct[r * g.ldc + j] + g.alpha * tile[r * W + j] : tile[r * W + j];
            }
            if (++cb == ncb) cb = 0, ++ib;
        }
    };
    const int64_t units = nblk * ncb;
    if (g.nthreads > 1 && units > 1) {
#pragma omp parallel num_threads(g.nthreads)
        {
            // A shifted last tile stays with the tile it overlaps: both write
            // those columns, so they must not run on two threads at once. The
            // split is static: a thread keeps its part of B and C in its own
            // cache from call to call (a dynamic split, which would balance
            // unequal vCPUs, made repeated calls twice as slow).
            const int64_t nt = team_size(), t = thread_id();
            auto bound = [&](int64_t u) { return shifted && ncb > 1 && u < units && u % ncb == ncb - 1 ? u + 1 : u; };
            tiles(bound(units * t / nt), bound(units * (t + 1) / nt));
        }
    } else {
        tiles(0, units);
    }
}
// Many row blocks (a tall product such as (8x784)^T.8x300): three vectors of
// columns per tile, 24 accumulators, where 512-bit registers leave room (fewer
// broadcasts and tiles per multiply-add). Few row blocks keep two, so that a
// batch of 8's column tiles split evenly between two threads.
template <class T>
static void gemm_small_m(const GemmJob<T>& g, const T* b, int64_t ldb, bool b_padded = false) {
    if (MM_VBYTES == 64 && g.m >= 4 * SMALL_M) return gemm_small_m_nv<T, 3>(g, b, ldb, b_padded);
    gemm_small_m_nv<T, SMALL_NV>(g, b, ldb, b_padded);
}

// Rows [i0, i0 + RM) of C = op(A) . op(B) for n <= L: one vector of columns.
// bp(p) gives row p of op(B) as a vector; lanes past n hold anything finite or
// not, and reach only lanes of C that are not kept.
template <class T, int RM, bool TA>
static inline void narrow_rows(const GemmJob<T>& g, int64_t i0, const T* const* brow, T* tile) {
    typedef typename VecOf<T>::type V;
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    V acc[RM];
#pragma GCC unroll 16
    for (int r = 0; r < RM; ++r) acc[r] = V{};
    for (int64_t p = 0; p < g.k; ++p) {
        V bv;
        __builtin_memcpy(&bv, brow[p], sizeof bv);
#pragma GCC unroll 16
        for (int r = 0; r < RM; ++r) {
            const T a = TA ? g.a[p * g.lda + i0 + r] : g.a[(i0 + r) * g.lda + p];
            acc[r] += a * bv;
        }
    }
    // C is (m, n) contiguous: a whole-vector store spills into the next row,
    // which is stored after it; the rows whose vector would pass C's end go
    // through the tile. Accumulating (C := C + alpha op(A) op(B)), every row
    // goes through the tile: a spilled lane would be added into the next row.
    const int64_t end = g.m * g.n;
#pragma GCC unroll 16
    for (int r = 0; r < RM; ++r) {
        T* c = g.c + (i0 + r) * g.n;
        if (g.accumulate) {
            __builtin_memcpy(tile, &acc[r], sizeof(V));
            for (int64_t j = 0; j < g.n; ++j) c[j] += g.alpha * tile[j];
        } else if ((i0 + r) * g.n + L <= end) {
            __builtin_memcpy(c, &acc[r], sizeof(V));
        } else {
            __builtin_memcpy(tile, &acc[r], sizeof(V));
            for (int64_t j = 0; j < g.n; ++j) c[j] = tile[j];
        }
    }
}

// C = op(A) . op(B) for n <= L columns into a contiguous C (ldc == n), no packing:
// ops.matmul's narrow products such as (8x300).(300x10) take a few hundred
// nanoseconds of arithmetic, less than packing them would.
constexpr int64_t NARROW_K = 1024;   // op(B) row pointers kept on the stack
constexpr int64_t NARROW_COPY = 64;  // op(B) rows copied on the stack, at most
template <class T, bool TA>
static void narrow_all_rows(const GemmJob<T>& g, const T* const* brow, T* tile) {
    constexpr int RM = 8;
    int64_t i0 = 0;
    if (TA)  // a transposed A gives each row block's values side by side: twice the rows per pass pays
        for (; i0 + 2 * RM <= g.m; i0 += 2 * RM) narrow_rows<T, 2 * RM, TA>(g, i0, brow, tile);
    for (; i0 + RM <= g.m; i0 += RM) narrow_rows<T, RM, TA>(g, i0, brow, tile);
    for (; i0 + 4 <= g.m; i0 += 4) narrow_rows<T, 4, TA>(g, i0, brow, tile);
    for (; i0 < g.m; ++i0) narrow_rows<T, 1, TA>(g, i0, brow, tile);
}
template <class T>
static void gemm_narrow_t(const GemmJob<T>& g) {
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    // Row p of op(B) as a vector: read in place when B is not transposed and the
    // vector ends inside B; else from a zero-padded copy (gemm_t sends only
    // products whose copied rows fit: all k when B is transposed, at most the
    // last L - 1 otherwise).
    const T* brow[NARROW_K];
    T pad[NARROW_COPY * L];
    T tile[L];
    const int64_t bend = (g.k - 1) * g.ldb + g.n;  // elements of B in use, non-transposed
    int64_t copied = 0;
    for (int64_t p = 0; p < g.k; ++p) {
        if (!g.trans_b && p * g.ldb + L <= bend) {
            brow[p] = g.b + p * g.ldb;
            continue;
        }
        T* row = pad + copied++ * L;
        for (int64_t j = 0; j < L; ++j) row[j] = j < g.n ? (g.trans_b ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j]) : T(0);
        brow[p] = row;
    }
    if (g.trans_a)
        narrow_all_rows<T, true>(g, brow, tile);
    else
        narrow_all_rows<T, false>(g, brow, tile);
}


// C = A . B^T for few rows through t, B transposed (k x np, rows padded with zeros).
template <class T>
static void gemm_small_bt(const GemmJob<T>& g, T* t, int64_t np) {
    transpose_padded(t, np, g.b, g.ldb, g.n, g.k);
    gemm_small_m(g, t, np, true);
}
// A transposed B of up to 16 KB of floats goes on the stack: aligned_alloc and
// free cost 0.07 us of a 0.8 us 8x10.(300x10)^T product. Not inlined, so that
// the other paths do not carry (and probe) the frame.
constexpr int64_t SMALL_BT = 4096;
template <class T>
__attribute__((noinline)) static void gemm_small_bt_stack(const GemmJob<T>& g, int64_t np) {
    alignas(64) T t[SMALL_BT];
    gemm_small_bt(g, t, np);
}
// C = A . B^T through a transposed copy of B, its rows padded with zeros to
// whole register blocks: on the stack when small, else in a scratch buffer.
template <class T>
static void gemm_via_bt(const GemmJob<T>& g) {
    constexpr int64_t W = SMALL_NV * (MM_VBYTES / (int64_t)sizeof(T));
    const int64_t np = (g.n + W - 1) / W * W;
    if (g.k * np <= SMALL_BT) return gemm_small_bt_stack(g, np);
    Scratch bt(sizeof(T) * (size_t)(g.k * np));
    gemm_small_bt(g, bt.as<T>(), np);
}

#include "kernels/gemm_abt.inc"

// The products gemm_narrow_t takes: one vector of columns into a contiguous C,
// op(B)'s copied rows within its stack buffer (all of them when B is
// transposed, at most L - 1, the last rows, otherwise), little enough work for
// one thread.
template <class T>
static bool narrow_fits(const GemmJob<T>& g, int64_t work) {
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    static_assert(NARROW_COPY >= L, "the last rows of an untransposed B fit the copy");
    return g.n <= L && g.ldc == g.n && g.k > 0 && g.k <= NARROW_K && (!g.trans_b || g.k <= NARROW_COPY) &&
           work < (int64_t(1) << 20);
}

template <class T>
static void gemm_t(const GemmJob<T>& g) {
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    if (g.m <= 0 || g.n <= 0) return;
    const int64_t work = g.m * g.n * g.k;
    GemmJob<T> job = g;
    // Starting a parallel region costs microseconds: small products stay on one thread.
    if (work < (int64_t(1) << 20)) job.nthreads = 1;
    if (g.accumulate) {
        // C := C + alpha op(A) op(B). The few-row kernels add into C as they store
        // (a weight gradient a^T dZ of a batch, the engine's case), and so does
        // the blocked kernel when one depth block holds the whole sum; any other
        // shape goes to a scratch product added afterwards.
        const bool in_l2 = g.k * g.n * (int64_t)sizeof(T) <= cache_sizes().l2;
        if (g.k > 0 && !g.trans_b && g.n > L && (g.k <= SMALL_K || (g.trans_a && g.k <= FEW_DEPTH && in_l2)))
            return gemm_small_m(job, g.b, g.ldb);
        // One vector of columns (an output layer's weight gradient a^T dZ, added
        // into W by the fused SGD step): the narrow kernel adds as it stores.
        if (narrow_fits(g, work)) return gemm_narrow_t(job);
        if (g.k > 0 && g.k <= gemm_blocks<T>().kc && work >= 16 * 1024 && !(g.m <= FEW_ROWS && in_l2))
            return gemm_blocked_t(job);
        Scratch tmp(sizeof(T) * (size_t)(g.m * g.n));
        GemmJob<T> plain = job;
        plain.accumulate = false;
        plain.c = tmp.as<T>();
        plain.ldc = g.n;
        gemm_t(plain);
        for (int64_t i = 0; i < g.m; ++i)
            for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] += g.alpha * plain.c[i * g.n + j];
        return;
    }
    // The copied rows of op(B) fit the stack buffer: all of them when B is
    // transposed, at most L - 1 of them (the last rows) otherwise.
    if (narrow_fits(g, work)) return gemm_narrow_t(job);
    // A transposed A of a batch's depth (a weight gradient a^T dZ): its row
    // blocks are contiguous, and B's k rows stay in L1 for every block.
    const bool b_in_l2 = g.k * g.n * (int64_t)sizeof(T) <= cache_sizes().l2;
    if (g.k > 0 && !g.trans_b && (g.k <= SMALL_K || (g.trans_a && g.k <= FEW_DEPTH && b_in_l2)))
        return gemm_small_m(job, g.b, g.ldb);
    // A shallow product with B transposed (the delta below a narrow layer,
    // dZ . W^T with k = 10 classes): op(B) is k short rows, transposed once (k n
    // elements against m n k multiply-adds) and padded, then streamed from L1
    // by every row block, as for an untransposed shallow B.
    if (g.trans_b && g.k > 0 && g.k <= SMALL_K && g.n > L) return gemm_via_bt(job);
    if (g.k > 0 && (g.m <= 2 * SMALL_M || (g.m <= FEW_ROWS && b_in_l2))) {
        if (!g.trans_b) return gemm_small_m(job, g.b, g.ldb);
        // Deep enough for whole vectors along the depth: dot products of rows,
        // nothing transposed (a backward pass's dZ . W^T).
        if (!g.trans_a && g.m <= 2 * ABT_RM * 2 && g.k >= 4 * (MM_VBYTES / (int64_t)sizeof(T))) return gemm_abt_small(job);
        // Transposing a small B is cheaper than reading it across its rows.
        if (g.m <= 2 * SMALL_M && work < (int64_t(1) << 24)) return gemm_via_bt(job);
    }
    // Below this much work, packing costs more than it saves.
    if (work < 16 * 1024 && !g.trans_b) return gemm_naive_t(job);
    gemm_blocked_t(job);
}

// ---------------------------------------------------------------------------
// Layers. Each is a plain function: outputs first, then inputs, then sizes.

// Converts rows of the input (any dtype, any strides) into a dense (B, D) block.
// uint8 pixels become v / 255 through a table, exactly as x.astype(T) / 255.
template <class T, class In>
static void gather_rows_as(T* out, const InputView& x, const int64_t* order, int64_t start, int64_t B,
                           const T* lut) {
    // out: (B, D)
    const In* base = static_cast<const In*>(x.data);
    const int64_t D = x.cols;
    for (int64_t r = 0; r < B; ++r) {
        const int64_t idx = order ? order[start + r] : start + r;
        const In* row = base + idx * x.row_stride;
        T* o = out + r * D;
        if (lut) {
            for (int64_t k = 0; k < D; ++k) o[k] = lut[(int)row[k * x.col_stride]];
        } else if (x.col_stride == 1) {
            for (int64_t k = 0; k < D; ++k) o[k] = (T)row[k];
        } else {
            for (int64_t k = 0; k < D; ++k) o[k] = (T)row[k * x.col_stride];
        }
    }
}

template <class T>
static void gather_rows(T* out, const InputView& x, const int64_t* order, int64_t start, int64_t B,
                        const T* u8_lut) {
    switch (x.type) {
        case InputType::u8: return gather_rows_as<T, uint8_t>(out, x, order, start, B, u8_lut);
        case InputType::f32: return gather_rows_as<T, float>(out, x, order, start, B, nullptr);
        case InputType::f64: return gather_rows_as<T, double>(out, x, order, start, B, nullptr);
    }
}

template <class T>
static void make_u8_lut(T* lut) {
    for (int v = 0; v < 256; ++v) lut[v] = (T)v / (T)255;
}

// Row-wise softmax with the row max subtracted; the loss is log-sum-exp minus
// the true logit, finite even when the true class's probability underflows.
// dlogits = (p - onehot) / B, the fused softmax + cross-entropy gradient.
// Returns the summed (not mean) loss. With clip, the loss is scikit-learn's
// log_loss instead: -log of the true class's probability clipped to
// [eps, 1 - eps] (eps the type's machine epsilon), as MLPClassifier reports it.
template <class T>
static double softmax_xent_rows(T* probs, T* dlogits, const T* z, const int32_t* y, int64_t B,
                                int64_t C, int32_t* pred, bool clip = false) {
    // probs, dlogits: (B, C) or nullptr; z: (B, C); y: (B) or nullptr; pred: (B) or nullptr
    double loss = 0;
    for (int64_t r = 0; r < B; ++r) {
        const T* zr = z + r * C;
        T m = zr[0];
        for (int64_t j = 1; j < C; ++j) m = tmax(m, zr[j]);
        // Each exponential once: kept in an output row when there is one.
        T* e = dlogits ? dlogits + r * C : probs ? probs + r * C : nullptr;
        T s = 0;
        for (int64_t j = 0; j < C; ++j) {
            const T ej = t_exp(zr[j] - m);
            if (e) e[j] = ej;
            s += ej;
        }
        if (y && clip) {
            const T eps = sizeof(T) == 4 ? (T)__FLT_EPSILON__ : (T)__DBL_EPSILON__;
            const T py = (e ? e[y[r]] : t_exp(zr[y[r]] - m)) / s;
            loss -= (double)t_log(tmin(tmax(py, eps), T(1) - eps));
        } else if (y) {
            loss += (double)(t_log(s) - (zr[y[r]] - m));
        }
        if (probs || dlogits || pred) {
            int32_t best = 0;
            T best_p = -1;
            for (int64_t j = 0; j < C; ++j) {
                const T p = (e ? e[j] : t_exp(zr[j] - m)) / s;
                if (probs) probs[r * C + j] = p;
                if (dlogits) dlogits[r * C + j] = (p - (y && j == y[r] ? T(1) : T(0))) / (T)B;
                if (p > best_p) { best_p = p; best = (int32_t)j; }
            }
            if (pred) pred[r] = best;
        }
    }
    return loss;
}

// ---------------------------------------------------------------------------
// Training: the fused one-hidden-layer variant, the stage kernels, and the one
// epoch loop over them (engine/train_epoch.inc).

#include "kernels/panel_kernels.inc"
#include "kernels/activations.inc"
#include "kernels/sparse_first_layer.inc"
#include "kernels/update.inc"
#include "kernels/dropout.inc"
#include "kernels/backward_rows.inc"
#include "engine/train_panels.inc"
#include "engine/train_epoch.inc"

// ---------------------------------------------------------------------------
// Forward pass over many rows, in chunks split between threads. Each chunk's
// loss lands in its own slot and the slots are summed in order, so the result
// does not depend on the thread count.

constexpr int64_t EVAL_CHUNK = 128;

// The first layer for uint8 pixels: each row adds one W1 row per nonzero pixel
// (fwd_block), with W1 padded to whole vectors; the outer loop runs over column
// blocks so a block of W1 stays in cache across the rows of a chunk.
//
// With 32 vector registers (AVX-512), rows go in groups of EVAL_GROUP: the group
// walks the union of its rows' nonzero inputs, and each W1 vector loaded feeds
// EVAL_GROUP accumulators (a row that does not use the input adds 0 * w, which
// leaves its sum unchanged). Four MNIST rows use ~305 distinct inputs against
// ~600 in all: half the loads of W1 from L2, which bound this loop, for twice the
// multiply-adds, which did not (groups of 3: 0.055 s for 70k rows on 2 threads,
// of 4: 0.049 s; 5 or 6 rows leave too few registers).
constexpr int EVAL_GROUP = kPlanGroup;
constexpr int EVAL_GROUP_NV = PLAN_NV;  // the block sizes fwd_union_block takes
constexpr bool EVAL_GROUPED = MM_VBYTES == 64;

template <class T>
static void sparse_first_layer(T* out, int64_t ldo, const InputView& x, int64_t start, int64_t rows,
                               const T* w1p, const T* b1p, int64_t Hp, const T* lut, int32_t* idx, T* val,
                               int32_t* cnt, T* xd, uint64_t* used, bool relu) {
    // relu: store through ReLU, else the pre-activations (the caller applies f)
    // out: (rows + EVAL_GROUP - 1, Hp); idx, val: (rows, D); cnt: (rows);
    // xd: (D, EVAL_GROUP) zeros; used: ((D + 63) / 64) zeros
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    const int64_t D = x.cols;
    const int64_t nv = Hp / L;
    if (EVAL_GROUPED) {
        constexpr int G = EVAL_GROUP;
        // Each group's union of nonzero inputs (qk, increasing) with its rows'
        // values (qx, G per input), straight from the pixels: a row writes its
        // column of xd and marks its nonzeros in `used`; the marks are read in
        // order. Group q's lists go to idx + q * D and val + q * D * G.
        const int64_t ngroups = (rows + G - 1) / G;
        int32_t nus[EVAL_CHUNK / EVAL_GROUP + 1];
        const int64_t words = (D + 63) / 64;
        for (int64_t q = 0; q < ngroups; ++q) {
            for (int g = 0; g < G && q * G + g < rows; ++g) {
                const uint8_t* p = static_cast<const uint8_t*>(x.data) + (start + q * G + g) * x.row_stride;
                int64_t k = 0;
                if (x.col_stride == 1) {
                    for (; k + 8 <= D; k += 8) {
                        uint64_t word;
                        __builtin_memcpy(&word, p + k, 8);
                        if (!word) continue;  // most 8-pixel runs of a digit image are blank
                        for (int i = 0; i < 8; ++i) {
                            const uint8_t v = p[k + i];
                            xd[(k + i) * G + g] = lut[v];
                            used[(k + i) >> 6] |= (uint64_t)(v != 0) << ((k + i) & 63);
                        }
                    }
                }
                for (; k < D; ++k) {
                    const uint8_t v = p[k * x.col_stride];
                    xd[k * G + g] = lut[v];
                    used[k >> 6] |= (uint64_t)(v != 0) << (k & 63);
                }
            }
            int32_t* qk = idx + q * D;
            T* qx = val + q * D * G;
            int32_t nu = 0;
            for (int64_t w = 0; w < words; ++w) {
                uint64_t bits = used[w];
                used[w] = 0;
                while (bits) {
                    const int32_t k = (int32_t)(w * 64 + __builtin_ctzll(bits));
                    bits &= bits - 1;
                    qk[nu] = k;
                    for (int g = 0; g < G; ++g) {
                        qx[nu * G + g] = xd[k * G + g];
                        xd[k * G + g] = T(0);
                    }
                    ++nu;
                }
            }
            nus[q] = nu;
        }
        int32_t orow[G];  // a group's rows, consecutive
        for (int g = 0; g < G; ++g) orow[g] = g;
        for (int64_t v0 = 0; v0 < nv; v0 += EVAL_GROUP_NV) {
            const int64_t j = v0 * L;
            const int nb = (int)tmin<int64_t>(EVAL_GROUP_NV, nv - v0);
            for (int64_t q = 0; q < ngroups; ++q) {
                T* o = out + q * G * ldo + j;
                const int32_t* qk = idx + q * D;
                const T* qx = val + q * D * G;
                if (relu) fwd_union_block<true>(nb, o, ldo, orow, b1p + j, w1p + j, Hp, qk, qx, lut, nus[q]);
                else fwd_union_block<false>(nb, o, ldo, orow, b1p + j, w1p + j, Hp, qk, qx, lut, nus[q]);
            }
        }
        return;
    }
    for (int64_t r = 0; r < rows; ++r)
        cnt[r] = sample_nonzeros(idx + r * D, val + r * D, x, start + r, lut, true);
    for (int64_t v0 = 0; v0 < nv; v0 += FWD_BLOCK) {
        const int64_t j = v0 * L;
        const int nb = (int)tmin<int64_t>(FWD_BLOCK, nv - v0);
        for (int64_t r = 0; r < rows; ++r) {
            if (relu) {
                MM_BLOCK_SWITCH(fwd_block, nb, out + r * ldo + j, b1p + j, w1p + j, Hp, idx + r * D, val + r * D, lut,
                                cnt[r])
            } else {
                MM_BLOCK_SWITCH(fwd_block_linear, nb, out + r * ldo + j, b1p + j, w1p + j, Hp, idx + r * D,
                                val + r * D, lut, cnt[r])
            }
        }
    }
}

// The first layer of rows [b0 * span, b0 * span + rows) of the data a BatchPlan
// was built from (blocks b0, b0 + 1, ...): its forward groups already list each
// group's union of nonzero inputs (fit evaluates its training set this way after
// every epoch).
template <class T>
static void plan_first_layer(T* out, int64_t ldo, const BatchPlan& plan, int64_t b0, int64_t rows, const T* w1p,
                             const T* b1p, int64_t Hp, const T* lut, bool relu) {
    // out: (rows + 1, Hp), the last row a spare for the missing rows of short groups
    constexpr int L = MM_VBYTES / (int)sizeof(T);
    constexpr int G = kPlanGroup;
    const int64_t nv = Hp / L, S = plan.span, bend = b0 + (rows + S - 1) / S;
    for (int64_t v0 = 0; v0 < nv; v0 += EVAL_GROUP_NV) {
        const int64_t j = v0 * L;
        const int nb = (int)tmin<int64_t>(EVAL_GROUP_NV, nv - v0);
        for (int64_t b = b0; b < bend; ++b) {
            const int64_t ng = (tmin(S, plan.n - b * S) + G - 1) / G;
            for (int64_t q = 0; q < ng; ++q) {
                const PlanGroup pg = plan_group(plan, b * plan.gpb + q, (b - b0) * S, rows);
                if (relu)
                    fwd_pattern_block<true>(nb, out + j, ldo, pg.orow, b1p + j, w1p + j, Hp, pg.fk, pg.fx, pg.pat, lut,
                                            pg.nu);
                else
                    fwd_pattern_block<false>(nb, out + j, ldo, pg.orow, b1p + j, w1p + j, Hp, pg.fk, pg.fx, pg.pat,
                                             lut, pg.nu);
            }
        }
    }
}

template <class T>
static void evaluate_t(EvalJob<T>& job) {
    const NetView<T>& net = job.net;
    const int L = net.nlayers;
    const int64_t classes = net.sizes[L];
    const int64_t D = net.sizes[0], H = net.sizes[1];
    int64_t widest = 0;
    for (int l = 0; l <= L; ++l) widest = tmax(widest, net.sizes[l]);
    widest += GRP;  // room for the padded first layer
    // Pixels are mostly zero: skip them in the first layer, when there are rows
    // enough to pay for a padded copy of W1.
    const bool sparse = job.x.type == InputType::u8 && job.n >= 64 && L >= 2;
    // With a plan, chunks are whole blocks of its batches (span <= EVAL_CHUNK rows).
    static_assert(kPlanSpan <= EVAL_CHUNK, "a chunk holds at least one block of a plan");
    const bool use_plan = sparse && job.plan && job.plan->n == job.n && EVAL_GROUPED && L == 2;
    const int64_t chunk = use_plan ? EVAL_CHUNK / job.plan->span * job.plan->span : EVAL_CHUNK;
    const int64_t nchunks = (job.n + chunk - 1) / chunk;
    Scratch slot_loss(sizeof(double) * (size_t)(nchunks + 1));
    Scratch slot_correct(sizeof(int64_t) * (size_t)(nchunks + 1));
    double* sl = slot_loss.as<double>();
    int64_t* sc = slot_correct.as<int64_t>();
    const int nt = job.nthreads > 0 ? job.nthreads : 1;
    const ActivationFns<T> act = activation_fns<T>(net.act);
    const bool relu = net.act == Activation::relu;

    const int64_t Hp = (H + GRP - 1) / GRP * GRP;
    // With one hidden layer, the logits are dot products with W2^T's padded rows
    // (a GEMM would spend as long packing its operands as multiplying them).
    const bool direct2 = sparse && L == 2;
    Scratch w1_mem(sparse ? sizeof(T) * (size_t)(D * Hp + Hp + (direct2 ? classes * Hp : 0)) : 0);
    T* w1p = w1_mem.as<T>();  // null when !sparse (Scratch(0) allocates nothing)
    T* b1p = sparse ? w1p + D * Hp : nullptr;
    T* w2t = sparse ? b1p + Hp : nullptr;  // (classes, Hp) when direct2
    if (sparse) {
        for (int64_t k = 0; k < D; ++k)
            for (int64_t j = 0; j < Hp; ++j) w1p[k * Hp + j] = j < H ? net.w[0][k * H + j] : T(0);
        for (int64_t j = 0; j < Hp; ++j) b1p[j] = j < H ? net.b[0][j] : T(0);
    }
    if (direct2)
        for (int64_t c = 0; c < classes; ++c)
            for (int64_t j = 0; j < Hp; ++j) w2t[c * Hp + j] = j < H ? net.w[1][j * classes + c] : T(0);
    // Room for EVAL_GROUP - 1 rows past the chunk: the last group's missing rows.
    constexpr int64_t CR = EVAL_CHUNK + EVAL_GROUP;
    const int64_t words = (D + 63) / 64;
    const size_t per_thread = (size_t)(2 * CR * widest + 256 + EVAL_CHUNK +
                                       (sparse ? CR * D * 2 + EVAL_CHUNK + D * EVAL_GROUP : 0));
    const int64_t used_stride = (words + 7) / 8 * 8;  // whole cache lines per thread
    Scratch used_mem(sizeof(uint64_t) * (size_t)(used_stride * nt));
    Scratch bufs(sizeof(T) * per_thread * (size_t)nt);
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1 && nchunks > 1)
    {
        T* cur = bufs.as<T>() + per_thread * (size_t)thread_id();
        T* nxt = cur + CR * widest;
        T* lut = nxt + CR * widest;
        int32_t* pred = reinterpret_cast<int32_t*>(lut + 256);
        T* nz_val = lut + 256 + EVAL_CHUNK;               // sizeof(int32_t) <= sizeof(T)
        int32_t* nz_idx = reinterpret_cast<int32_t*>(nz_val + CR * D);
        int32_t* nz_cnt = reinterpret_cast<int32_t*>(nz_val + 2 * CR * D);
        T* xd = nz_val + 2 * CR * D + EVAL_CHUNK;         // (D, EVAL_GROUP), kept zero between groups
        uint64_t* used = used_mem.as<uint64_t>() + used_stride * thread_id();
        if (sparse) {
            for (int64_t i = 0; i < D * EVAL_GROUP; ++i) xd[i] = T(0);
            for (int64_t w = 0; w < words; ++w) used[w] = 0;
        }
        make_u8_lut(lut);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nchunks; ++c) {
            // gemm_t may allocate; an exception must not leave the parallel region.
            if (__atomic_load_n(&failed, __ATOMIC_RELAXED)) continue;
            try {
            const int64_t start = c * chunk;
            const int64_t rows = tmin(chunk, job.n - start);
            T* in = cur;
            T* out = nxt;
            int first = 0;
            int64_t ld_in = D;
            if (sparse) {
                if (use_plan)
                    plan_first_layer(in, Hp, *job.plan, start / job.plan->span, rows, w1p, b1p, Hp, lut, relu);
                else
                    sparse_first_layer(in, Hp, job.x, start, rows, w1p, b1p, Hp, lut, nz_idx, nz_val, nz_cnt, xd,
                                       used, relu);
                // Other activations: f over the layer's units (the padded columns
                // past H are never read: W2's padded rows are zero or not used).
                if (!relu) act.bias_act(in, Hp, nullptr, rows, H);
                first = 1;
                ld_in = Hp;
            } else {
                gather_rows(in, job.x, nullptr, start, rows, lut);
            }
            if (direct2) {
                typedef typename VecOf<T>::type V;
                constexpr int VL = MM_VBYTES / (int)sizeof(T);
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < classes; ++c) {
                        V acc = V{};
                        for (int64_t j = 0; j < Hp; j += VL) acc += vload(in + r * Hp + j) * vload(w2t + c * Hp + j);
                        out[r * classes + c] = net.b[1][c] + hsum<T>(acc);
                    }
                T* t = in; in = out; out = t;
                first = L;
            }
            for (int l = first; l < L; ++l) {
                const int64_t C = net.sizes[l], OC = net.sizes[l + 1];
                GemmJob<T> g{rows, OC, C, in, ld_in, false, net.w[l], OC, false, out, OC, 1};
                gemm_t(g);
                if (l + 1 < L) act.bias_act(out, OC, net.b[l], rows, OC);
                else bias_rows(out, OC, net.b[l], rows, OC);
                T* t = in; in = out; out = t;
                ld_in = OC;
            }
            sl[c] = softmax_xent_rows<T>(job.probs ? job.probs + start * classes : nullptr, nullptr, in,
                                         job.y ? job.y + start : nullptr, rows, classes, pred);
            int64_t ok = 0;
            for (int64_t r = 0; r < rows; ++r) {
                if (job.pred) job.pred[start + r] = pred[r];
                if (job.y) ok += pred[r] == job.y[start + r];
            }
            sc[c] = ok;
            } catch (...) {
                __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
            }
        }
    }
    if (failed) throw_bad_alloc();  // Scratch throws nothing else
    double loss = 0;
    int64_t correct = 0;
    for (int64_t c = 0; c < nchunks; ++c) { loss += sl[c]; correct += sc[c]; }
    job.loss_sum = loss;
    job.correct = correct;
}

template <class T>
static void relu_t(T* out, const T* in, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = in[i] < T(0) ? T(0) : in[i];  // NaN stays NaN, as np.maximum
}

template <class T>
static double softmax_xent_t(T* probs, T* dlogits, const T* z, const int32_t* y, int64_t rows, int64_t cols) {
    const double s = softmax_xent_rows<T>(probs, dlogits, z, y, rows, cols, nullptr);
    return rows > 0 ? s / (double)rows : 0.0;
}

template <class T>
static constexpr Kernels<T> make_kernels(const char* isa) {
    return Kernels<T>{isa, &gemm_t<T>, &gemm_naive_t<T>, &train_epoch_engine<T>, &evaluate_t<T>, &relu_t<T>,
                      &softmax_xent_t<T>};
}
