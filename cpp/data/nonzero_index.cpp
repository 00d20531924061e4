#include "data/nonzero_index.hpp"

#include <algorithm>
#include <cstring>

namespace mm {

namespace {

// How many of row's d pixels are nonzero.
int64_t count_nonzeros(const uint8_t* row, int64_t d, int64_t stride) {
    int64_t c = 0;
    if (stride == 1)
        for (int64_t k = 0; k < d; ++k) c += row[k] != 0;  // vectorised
    else
        for (int64_t k = 0; k < d; ++k) c += row[k * stride] != 0;
    return c;
}

}  // namespace

NonzeroIndexData::NonzeroIndexData(const InputView& x, int nthreads)
    : source_(x) {
    (void)nthreads;  // unused without OpenMP
    const int64_t n = x.rows, d = x.cols;
    const auto* base = static_cast<const uint8_t*>(x.data);
    offsets_.assign((size_t)n + 1, 0);
    // Two passes: count per row, then fill at the prefix-summed offsets.
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t i = 0; i < n; ++i) offsets_[(size_t)i + 1] = count_nonzeros(base + i * x.row_stride, d, x.col_stride);
    for (int64_t i = 0; i < n; ++i) offsets_[(size_t)i + 1] += offsets_[(size_t)i];
    idx_.resize((size_t)offsets_.back());
    val_.resize((size_t)offsets_.back());
    // The pixels may change between the passes (another thread writing the
    // array, or the file under a memory map): every row's writes are bounded by
    // the room its count gave it, and a row whose count changed is fixed below.
    std::vector<int32_t> found((size_t)n);
    int changed = 0;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1) reduction(| : changed)
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = base + i * x.row_stride;
        const int64_t o0 = offsets_[(size_t)i], room = offsets_[(size_t)i + 1] - o0;
        int64_t o = o0;
        for (int64_t k = 0; k < d && o - o0 < room; ++k) {
            const uint8_t v = row[k * x.col_stride];
            if (v) {
                idx_[(size_t)o] = (uint16_t)k;
                val_[(size_t)o] = v;
                ++o;
            }
        }
        found[(size_t)i] = (int32_t)(o - o0);
        changed |= o - o0 != room;
    }
    if (changed) {
        // Rows that lost nonzeros keep what was found; rows that gained keep the
        // first ones up to their room. Compact, so every row's list is contiguous.
        int64_t w = 0;
        for (int64_t i = 0; i < n; ++i) {
            const int64_t o0 = offsets_[(size_t)i], c = found[(size_t)i];
            if (w != o0) {
                std::memmove(idx_.data() + w, idx_.data() + o0, (size_t)c * sizeof(uint16_t));
                std::memmove(val_.data() + w, val_.data() + o0, (size_t)c);
            }
            offsets_[(size_t)i] = w;
            w += c;
        }
        offsets_[(size_t)n] = w;
        idx_.resize((size_t)w);
        val_.resize((size_t)w);
    }
}

int64_t NonzeroIndexData::nbytes() const {
    return (int64_t)(offsets_.size() * 8 + idx_.size() * 2 + val_.size());
}

}  // namespace mm
