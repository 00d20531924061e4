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
    capacity_ = offsets_.back();
    idx_.reset(new uint16_t[(size_t)capacity_ + 1]);
    val_.reset(new uint8_t[(size_t)capacity_ + 1]);
    // The pixels may change between the passes (another thread writing the
    // array, or the file under a memory map): every row's writes are bounded by
    // the room its count gave it, and a row whose count changed is fixed below.
    std::vector<int32_t> found((size_t)n);
    int changed = 0;
    uint16_t* idx = idx_.get();
    uint8_t* val = val_.get();
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1) reduction(| : changed)
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = base + i * x.row_stride;
        const int64_t o0 = offsets_[(size_t)i], end = offsets_[(size_t)i + 1];
        int64_t o = o0, k = 0;
        if (x.col_stride == 1) {
            // Eight pixels at a time: a blank word is skipped at once (most of a
            // digit's rows are blank), the others are written without a branch
            // (every pixel's entry is stored, and the next slot taken only for a
            // nonzero one), while eight more entries fit the row's room.
            for (; k + 8 <= d && o + 8 <= end; k += 8) {
                uint64_t word;
                std::memcpy(&word, row + k, 8);
                if (!word) continue;
                for (int b = 0; b < 8; ++b) {
                    const uint8_t v = row[k + b];
                    idx[o] = (uint16_t)(k + b);
                    val[o] = v;
                    o += v != 0;
                }
            }
        }
        for (; k < d && o < end; ++k) {
            const uint8_t v = row[k * x.col_stride];
            if (v) {
                idx[o] = (uint16_t)k;
                val[o] = v;
                ++o;
            }
        }
        found[(size_t)i] = (int32_t)(o - o0);
        changed |= o != end;
    }
    if (changed) {
        // Rows that lost nonzeros keep what was found; rows that gained keep the
        // first ones up to their room. Compact, so every row's list is contiguous.
        int64_t w = 0;
        for (int64_t i = 0; i < n; ++i) {
            const int64_t o0 = offsets_[(size_t)i], c = found[(size_t)i];
            if (w != o0) {
                std::memmove(idx + w, idx + o0, (size_t)c * sizeof(uint16_t));
                std::memmove(val + w, val + o0, (size_t)c);
            }
            offsets_[(size_t)i] = w;
            w += c;
        }
        offsets_[(size_t)n] = w;
    }
}

int64_t NonzeroIndexData::nbytes() const {
    return (int64_t)(offsets_.size() * 8 + capacity_ * 3);
}

}  // namespace mm
