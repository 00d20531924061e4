#include "data/batch_plan.hpp"

#include "data/nonzero_index.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <cstring>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace mm {

namespace {

int thread_num() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Row i's nonzero pixels, in increasing column order; returns how many (at
// most x.cols). From the index nz when there is one, else from the pixels.
int64_t row_nonzeros(const InputView& x, const NonzeroIndex* nz, int64_t i, uint16_t* k, uint8_t* v) {
    if (nz) {
        const int64_t o = nz->offsets[i], n = nz->offsets[i + 1] - o;
        if (n) {  // (an empty index's data may be null)
            std::memcpy(k, nz->idx + o, (size_t)n * sizeof(uint16_t));
            std::memcpy(v, nz->val + o, (size_t)n);
        }
        return n;
    }
    const auto* row = static_cast<const uint8_t*>(x.data) + i * x.row_stride;
    int64_t n = 0, c = 0;
    if (x.col_stride == 1)
        for (; c + 8 <= x.cols; c += 8) {
            uint64_t word;
            std::memcpy(&word, row + c, 8);
            if (!word) continue;  // most 8-pixel runs of a digit image are blank
            for (int j = 0; j < 8; ++j) {
                k[n] = (uint16_t)(c + j);
                v[n] = row[c + j];
                n += row[c + j] != 0;
            }
        }
    for (; c < x.cols; ++c) {
        const uint8_t p = row[c * x.col_stride];
        k[n] = (uint16_t)c;
        v[n] = p;
        n += p != 0;
    }
    return n;
}

// This file is compiled for baseline x86-64. Its hot loops are also compiled for
// a wider instruction set with GCC's target_clones, and the loader picks the
// clone the CPU runs: POPCNT for the grouping's population counts (the baseline
// has no such instruction, and its library routine is several times slower),
// AVX2 for the dot products.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MM_CLONES(isa) __attribute__((target_clones(isa, "default")))
#else
#define MM_CLONES(isa)
#endif

MM_CLONES("popcnt") int64_t union_size(const uint64_t* bm, const int32_t* rows, int n, int64_t words) {
    int64_t s = 0;
    for (int64_t w = 0; w < words; ++w) {
        uint64_t u = 0;
        for (int i = 0; i < n; ++i) u |= bm[rows[i] * words + w];
        s += __builtin_popcountll(u);
    }
    return s;
}

// A block's samples in groups of kPlanGroup (perm, group after group), chosen
// so the groups' unions of nonzero inputs are small: every forward step costs
// four multiply-adds per input of the union. Any grouping gives the same sums. Up
// to two groups: the best split (35 candidates for 8 samples); more: greedy, each
// group grown by the sample that adds fewest new inputs. On MNIST's blocks of 64
// the unions are 20% smaller than those of consecutive samples.
MM_CLONES("popcnt") void group_samples(int32_t* perm, uint64_t* bm, uint64_t* acc, const uint16_t* nk,
                                       const int64_t* nn, int64_t rows, int64_t d, int64_t words) {
    // bm: (rows, words) scratch; acc: (words) scratch
    constexpr int G = kPlanGroup;
    for (int64_t r = 0; r < rows; ++r) {
        perm[r] = (int32_t)r;
        uint64_t* m = bm + r * words;
        for (int64_t w = 0; w < words; ++w) m[w] = 0;
        for (int64_t t = 0; t < nn[r]; ++t) m[nk[r * d + t] >> 6] |= (uint64_t)1 << (nk[r * d + t] & 63);
    }
    if (rows <= G) return;
    if (rows <= 2 * G) {
        // Sample 0 and G - 1 others in the first group: every split once.
        int32_t best[2 * G], cand[2 * G];
        int64_t best_size = -1;
        const int others = (int)rows - 1;
        for (uint32_t mask = 0; mask < (1u << others); ++mask) {
            if (__builtin_popcount(mask) != G - 1) continue;
            int a = 0, z = G;
            cand[a++] = 0;
            for (int i = 0; i < others; ++i) (mask >> i & 1 ? cand[a++] : cand[z++]) = i + 1;
            const int64_t size = union_size(bm, cand, G, words) + union_size(bm, cand + G, (int)rows - G, words);
            if (best_size < 0 || size < best_size) {
                best_size = size;
                for (int64_t i = 0; i < rows; ++i) best[i] = cand[i];
            }
        }
        for (int64_t i = 0; i < rows; ++i) perm[i] = best[i];
        return;
    }
    for (int64_t start = 0; start < rows; start += G) {
        // perm[start..] are the samples left; the one with the fewest inputs opens
        // the group (on MNIST 3.6% smaller unions than the first one left), whose
        // union so far is acc.
        int64_t open = start;
        for (int64_t c = start + 1; c < rows; ++c)
            if (nn[perm[c]] < nn[perm[open]]) open = c;
        std::swap(perm[start], perm[open]);
        for (int64_t w = 0; w < words; ++w) acc[w] = bm[perm[start] * words + w];
        for (int64_t pos = start + 1; pos < std::min(start + G, rows); ++pos) {
            int64_t pick = pos, pick_size = -1;
            for (int64_t c = pos; c < rows; ++c) {
                const uint64_t* m = bm + perm[c] * words;
                int64_t size = 0;
                for (int64_t w = 0; w < words; ++w) size += __builtin_popcountll(acc[w] | m[w]);
                if (pick_size < 0 || size < pick_size) {
                    pick_size = size;
                    pick = c;
                }
            }
            std::swap(perm[pos], perm[pick]);
            for (int64_t w = 0; w < words; ++w) acc[w] |= bm[perm[pos] * words + w];
        }
    }
}

// The dot products of each sample with the samples of the block's earlier
// batches: dots[s1 * span + s2] = x_s1 . x_s2 for s1 in [batch, rows) and s2
// below s1's batch. Each nonzero pixel (k, v) of s1 adds v times input k's
// column of the block, xt[k * span ..] (the block's pixels, input-major, zero
// where a sample's pixel is): dense runs the compiler vectorizes, where summing
// pair by pair over the inputs the samples share scattered one product at a time.
// Exact: integers, at most 784 * 255^2 per dot product.
MM_CLONES("avx2") void cross_batch_dots(uint32_t* dots, const uint16_t* xt, const uint16_t* nk, const uint8_t* nv,
                                        const int64_t* nn, int64_t rows, int64_t batch, int64_t span, int64_t d) {
    for (int64_t s1 = batch; s1 < rows; ++s1) {
        const int64_t lim = s1 / batch * batch;
        uint32_t* row = dots + s1 * span;
        for (int64_t t = 0; t < nn[s1]; ++t) {
            const uint16_t* col = xt + nk[s1 * d + t] * span;
            const uint32_t v1 = nv[s1 * d + t];
            for (int64_t s2 = 0; s2 < lim; ++s2) row[s2] += v1 * col[s2];
        }
    }
}

}  // namespace

BatchPlanData::BatchPlanData(const InputView& x, int64_t batch, int nthreads, int (*stop)(void*), void* ctx)
    : source_(x) {
    // Two passes over the pixels: the first sizes every list, the second fills
    // them. Pixels that change in between (another thread writing the array, or
    // the file under a memory map) would make the second pass's lists outgrow
    // what the first allocated: the second pass checks every size before it
    // writes, and when one differs the plan is built again from a snapshot of
    // the pixels, their nonzero index, which cannot change (27 MB more for
    // MNIST, for the time of the build, only then).
    if (!build(x, nullptr, batch, nthreads, stop, ctx)) {
        const NonzeroIndexData index(x, nthreads);
        const NonzeroIndex nz = index.view();
        // Both passes read the same snapshot: always consistent.
        if (!build(x, &nz, batch, nthreads, stop, ctx)) throw std::logic_error("batch plan: inconsistent nonzero index");
    }
}

bool BatchPlanData::build(const InputView& x, const NonzeroIndex* nz, int64_t batch, int nthreads, int (*stop)(void*),
                          void* ctx) {
    // Blocks per parallel round; between rounds, stop (Ctrl-C) is asked.
    constexpr int64_t kStopBlocks = 256;
    constexpr int G = kPlanGroup;
    const int64_t n = x.rows, d = x.cols;
    const int64_t kb = std::max<int64_t>(1, kPlanSpan / batch), span = kb * batch;
    const int64_t nblk = (n + span - 1) / span, gpb = (span + G - 1) / G, words = (d + 63) / 64;
    const int64_t gram_per_block = batch * batch * kb * (kb - 1) / 2;
    row_off_.assign((size_t)nblk + 1, 0);
    ent_off_.assign((size_t)nblk + 1, 0);
    fwd_off_.assign((size_t)(nblk * gpb) + 1, 0);
    ngroup_.assign((size_t)(nblk * span), 0);
    fperm_.assign((size_t)(nblk * gpb * G), 255);
    fpat_.assign((size_t)(nblk * gpb * 16), 0);
    gram_.assign((size_t)(nblk * gram_per_block), 0);
    // Per-thread buffers (any thread of the team may take any block).
    struct Buffers {
        std::vector<uint16_t> nk, slot;
        std::vector<uint8_t> nv, xd;
        std::vector<int64_t> nn;
        std::vector<int32_t> cnt, order, first, perm;
        std::vector<uint64_t> mark, bm, acc;
        std::vector<uint32_t> dots;
        std::vector<uint16_t> xt;
        std::vector<uint16_t> uk;
        std::vector<uint8_t> umask;
    };
    std::vector<Buffers> bufs((size_t)std::max(nthreads, 1));
    std::atomic<bool> changed{false};
    for (Buffers& buf : bufs) {
        buf.nk.resize((size_t)(span * d));
        buf.slot.resize((size_t)(d * span));
        buf.nv.resize((size_t)(span * d));
        buf.xd.assign((size_t)(d * G), 0);
        buf.nn.resize((size_t)span);
        buf.cnt.assign((size_t)d, 0);
        buf.order.resize((size_t)d);
        buf.first.resize((size_t)span + 2);
        buf.perm.resize((size_t)span);
        buf.mark.assign((size_t)words, 0);
        buf.bm.resize((size_t)(span * words));
        buf.acc.resize((size_t)words);
        buf.dots.assign((size_t)(span * span), 0);
        buf.xt.assign((size_t)(d * span), 0);
        buf.uk.resize((size_t)d);
        buf.umask.resize((size_t)d);
    }
    // Two passes over the pixels: sizes (and the forward groups' members), then
    // the lists at the prefix-summed offsets, and the dot products.
    for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1) {
            for (int64_t b = 0; b < nblk; ++b) {
                row_off_[(size_t)b + 1] += row_off_[(size_t)b];
                ent_off_[(size_t)b + 1] += ent_off_[(size_t)b];
            }
            for (int64_t i = 0; i < nblk * gpb; ++i) fwd_off_[(size_t)i + 1] += fwd_off_[(size_t)i];
            rows_.resize((size_t)row_off_.back());
            ent_.resize((size_t)ent_off_.back());
            fk_.resize((size_t)fwd_off_.back());
            fx_.resize((size_t)fwd_off_.back() * G);
        }
        for (int64_t b0 = 0; b0 < nblk; b0 += kStopBlocks) {  // rounds of blocks, to check for Ctrl-C
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
        {
            // Allocated before the region: nothing may throw inside it.
            Buffers& buf = bufs[(size_t)thread_num()];
            auto& nk = buf.nk;
            auto& slot = buf.slot;
            auto& nv = buf.nv;
            auto& xd = buf.xd;
            auto& nn = buf.nn;
            auto& cnt = buf.cnt;
            auto& order = buf.order;
            auto& first = buf.first;
            auto& mark = buf.mark;
            auto& perm = buf.perm;
            auto& dots = buf.dots;
#pragma omp for schedule(static)
            for (int64_t b = b0; b < std::min(nblk, b0 + kStopBlocks); ++b) {
                const int64_t r0 = b * span, rows = std::min(n, r0 + span) - r0;
                int64_t total = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    nn[(size_t)r] = row_nonzeros(x, nz, r0 + r, nk.data() + r * d, nv.data() + r * d);
                    total += nn[(size_t)r];
                }
                uint8_t* members = fperm_.data() + b * gpb * G;
                if (pass == 0) {
                    // Sizes only, from the samples' bitmaps of inputs that the grouping
                    // builds: the inputs the block uses, its entries, each forward
                    // group's union. Pass 1 counts them again from the lists it writes.
                    group_samples(perm.data(), buf.bm.data(), buf.acc.data(), nk.data(), nn.data(), rows, d, words);
                    for (int64_t i = 0; i < rows; ++i) members[i] = (uint8_t)perm[(size_t)i];
                    row_off_[(size_t)b + 1] = union_size(buf.bm.data(), perm.data(), (int)rows, words);
                    ent_off_[(size_t)b + 1] = total;
                    for (int64_t q = 0; q < gpb; ++q) {
                        const int in_group = (int)std::max<int64_t>(0, std::min<int64_t>(G, rows - q * G));
                        fwd_off_[(size_t)(b * gpb + q) + 1] =
                            union_size(buf.bm.data(), perm.data() + q * G, in_group, words);
                    }
                    continue;
                }
                // Update lists: the inputs the block uses, each with its samples in order.
                int64_t used = 0;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t t = 0; t < nn[(size_t)r]; ++t) {
                        const int32_t k = nk[(size_t)(r * d + t)];
                        const int32_t c = cnt[(size_t)k];
                        if (c == 0) order[(size_t)used++] = k;
                        slot[(size_t)(k * span + c)] = (uint16_t)((r << 8) | nv[(size_t)(r * d + t)]);
                        cnt[(size_t)k] = c + 1;
                    }
                if (used != row_off_[(size_t)b + 1] - row_off_[(size_t)b] ||
                    total != ent_off_[(size_t)b + 1] - ent_off_[(size_t)b]) {
                    changed.store(true, std::memory_order_relaxed);  // the pixels changed: write nothing
                    for (int64_t u = 0; u < used; ++u) cnt[(size_t)order[(size_t)u]] = 0;
                    continue;
                }
                // Rows by count (stable), then each row's entries.
                for (int64_t c = 0; c <= span + 1; ++c) first[(size_t)c] = 0;
                for (int64_t u = 0; u < used; ++u) ++first[(size_t)cnt[(size_t)order[(size_t)u]] + 1];
                for (int64_t c = 1; c <= span; ++c) ngroup_[(size_t)(b * span + c - 1)] = first[(size_t)c + 1];
                for (int64_t c = 1; c <= span + 1; ++c) first[(size_t)c] += first[(size_t)c - 1];
                uint16_t* rws = rows_.data() + row_off_[(size_t)b];
                for (int64_t u = 0; u < used; ++u) {
                    const int32_t k = order[(size_t)u];
                    rws[first[(size_t)cnt[(size_t)k]]++] = (uint16_t)k;
                }
                // Each row's entries.
                uint16_t* e = ent_.data() + ent_off_[(size_t)b];
                for (int64_t u = 0; u < used; ++u) {
                    const int32_t k = rws[u];
                    const uint16_t* sl = slot.data() + k * span;
                    for (int32_t t = 0; t < cnt[(size_t)k]; ++t) *e++ = sl[t];
                    cnt[(size_t)k] = 0;
                }
                // The dot products between samples of different batches, from the
                // block's pixels input-major (xt, zero again afterwards).
                uint16_t* xt = buf.xt.data();
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t t = 0; t < nn[(size_t)r]; ++t)
                        xt[nk[(size_t)(r * d + t)] * span + r] = nv[(size_t)(r * d + t)];
                cross_batch_dots(dots.data(), xt, nk.data(), nv.data(), nn.data(), rows, batch, span, d);
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t t = 0; t < nn[(size_t)r]; ++t) xt[nk[(size_t)(r * d + t)] * span + r] = 0;
                uint32_t* g = gram_.data() + b * gram_per_block;
                for (int64_t j = 1; j < kb; ++j)
                    for (int64_t r = 0; r < batch; ++r) {
                        const int64_t s1 = j * batch + r;
                        uint32_t* src = dots.data() + s1 * span;
                        uint32_t* dst = g + batch * batch * j * (j - 1) / 2 + r * j * batch;
                        for (int64_t s = 0; s < j * batch; ++s) {
                            dst[s] = src[s];
                            src[s] = 0;
                        }
                    }
                // Forward groups (which samples go together was chosen in pass 0):
                // each sample's pixels into its column of xd, and the marked inputs
                // in increasing order.
                for (int64_t i = 0; i < rows; ++i) perm[(size_t)i] = members[i];
                for (int64_t q = 0; q < gpb; ++q) {
                    for (int64_t g = 0; g < G && q * G + g < rows; ++g) {
                        const int64_t r = perm[(size_t)(q * G + g)];
                        for (int64_t t = 0; t < nn[(size_t)r]; ++t) {
                            const int64_t k = nk[(size_t)(r * d + t)];
                            xd[(size_t)(k * G + g)] = nv[(size_t)(r * d + t)];
                            mark[(size_t)(k >> 6)] |= (uint64_t)1 << (k & 63);
                        }
                    }
                    const int64_t gi = b * gpb + q;
                    int64_t u = 0;
                    for (int64_t w = 0; w < words; ++w) {
                        uint64_t bits = mark[(size_t)w];
                        mark[(size_t)w] = 0;
                        while (bits) {
                            const int64_t k = w * 64 + __builtin_ctzll(bits);
                            bits &= bits - 1;
                            uint8_t m = 0;
                            for (int g = 0; g < G; ++g) m |= (uint8_t)((xd[(size_t)(k * G + g)] != 0) << g);
                            buf.uk[(size_t)u] = (uint16_t)k;
                            buf.umask[(size_t)u] = m;
                            ++u;
                        }
                    }
                    if (u != fwd_off_[(size_t)gi + 1] - fwd_off_[(size_t)gi]) {
                        changed.store(true, std::memory_order_relaxed);
                    } else {
                        // The inputs by member mask (a counting sort, stable: increasing within a mask).
                        int32_t* pat = fpat_.data() + gi * 16;
                        int64_t start[17] = {};
                        for (int64_t t = 0; t < u; ++t) ++start[buf.umask[(size_t)t] + 1];
                        for (int m = 1; m <= 16; ++m) start[m] += start[m - 1];
                        for (int m = 0; m < 16; ++m) pat[m] = (int32_t)start[m];
                        uint16_t* fk = fk_.data() + fwd_off_[(size_t)gi];
                        uint8_t* fx = fx_.data() + fwd_off_[(size_t)gi] * G;
                        for (int64_t t = 0; t < u; ++t) {
                            const int64_t k = buf.uk[(size_t)t], at = start[buf.umask[(size_t)t]]++;
                            fk[at] = (uint16_t)k;
                            for (int g = 0; g < G; ++g) fx[at * G + g] = xd[(size_t)(k * G + g)];
                        }
                    }
                    for (int64_t t = 0; t < u; ++t)
                        for (int g = 0; g < G; ++g) xd[(size_t)(buf.uk[(size_t)t] * G + g)] = 0;
                }
            }
        }
        if (stop && stop(ctx)) throw PlanInterrupted();  // Ctrl-C between rounds of blocks
        }
    }
    if (changed.load()) return false;
    view_ = BatchPlan{batch,         n,               kb,           span,         nblk,
                      row_off_.data(), ent_off_.data(), rows_.data(), ent_.data(), ngroup_.data(),
                      gpb,           fwd_off_.data(), fk_.data(),   fx_.data(),  fperm_.data(),
                      fpat_.data(),  gram_.data(),    gram_per_block};
    return true;
}

int64_t BatchPlanData::nbytes() const {
    return (int64_t)((row_off_.size() + ent_off_.size() + fwd_off_.size()) * 8 +
                     (rows_.size() + ent_.size() + fk_.size()) * 2 + (ngroup_.size() + gram_.size() + fpat_.size()) * 4 + fx_.size() +
                     fperm_.size());
}

}  // namespace mm
