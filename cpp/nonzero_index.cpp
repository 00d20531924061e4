#include "nonzero_index.hpp"

namespace mm {

NonzeroIndexData::NonzeroIndexData(const InputView& x, int nthreads)
    : source_(x) {
    (void)nthreads;  // unused without OpenMP
    const int64_t n = x.rows, d = x.cols;
    const auto* base = static_cast<const uint8_t*>(x.data);
    offsets_.assign((size_t)n + 1, 0);
    // Two passes: count per row, then fill at the prefix-summed offsets.
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = base + i * x.row_stride;
        int64_t c = 0;
        for (int64_t k = 0; k < d; ++k) c += row[k * x.col_stride] != 0;
        offsets_[(size_t)i + 1] = c;
    }
    for (int64_t i = 0; i < n; ++i) offsets_[(size_t)i + 1] += offsets_[(size_t)i];
    idx_.resize((size_t)offsets_.back());
    val_.resize((size_t)offsets_.back());
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = base + i * x.row_stride;
        int64_t o = offsets_[(size_t)i];
        for (int64_t k = 0; k < d; ++k) {
            const uint8_t v = row[k * x.col_stride];
            if (v) {
                idx_[(size_t)o] = (uint16_t)k;
                val_[(size_t)o] = v;
                ++o;
            }
        }
    }
}

}  // namespace mm

namespace mm {

int64_t NonzeroIndexData::nbytes() const {
    return (int64_t)(offsets_.size() * 8 + idx_.size() * 2 + val_.size());
}

}  // namespace mm
