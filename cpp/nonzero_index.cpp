#include "nonzero_index.hpp"

#include <algorithm>

namespace mm {

NonzeroIndexData::NonzeroIndexData(const InputView& x, int nthreads)
    : source_(x.data), cols_(x.cols), row_stride_(x.row_stride), col_stride_(x.col_stride) {
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
    std::lock_guard<std::mutex> lock(plan_mutex_);
    int64_t b = (int64_t)(offsets_.size() * 8 + idx_.size() * 2 + val_.size());
    if (plan_)
        b += (int64_t)((plan_->row_off.size() + plan_->ent_off.size()) * 8 +
                       (plan_->rows.size() + plan_->ent.size()) * 2 + plan_->ngroup.size() * 4);
    return b;
}

const BatchPlan& NonzeroIndexData::plan(int64_t batch, int nthreads) const {
    (void)nthreads;  // unused without OpenMP
    std::lock_guard<std::mutex> lock(plan_mutex_);
    const int64_t n = rows();
    if (plan_ && plan_->view.batch == batch) return plan_->view;
    plan_.reset();
    auto p = std::make_unique<PlanData>();
    const int64_t nb = (n + batch - 1) / batch, d = cols_;
    p->row_off.assign((size_t)nb + 1, 0);
    p->ent_off.assign((size_t)nb + 1, 0);
    for (int64_t b = 0; b <= nb; ++b) p->ent_off[(size_t)b] = offsets_[(size_t)std::min(n, b * batch)];
    p->ent.resize((size_t)nnz());
    p->ngroup.assign((size_t)(nb * batch), 0);
    // Pass 1: inputs used per batch. Pass 2, at the prefix-summed offsets: the
    // rows by count and the entries, the same lists the training loop would build.
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        std::vector<int32_t> cnt((size_t)d, 0);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; ++b) {
            int64_t used = 0;
            for (int64_t o = offsets_[(size_t)(b * batch)]; o < offsets_[(size_t)std::min(n, (b + 1) * batch)]; ++o)
                used += cnt[idx_[(size_t)o]]++ == 0;
            for (int64_t o = offsets_[(size_t)(b * batch)]; o < offsets_[(size_t)std::min(n, (b + 1) * batch)]; ++o)
                cnt[idx_[(size_t)o]] = 0;
            p->row_off[(size_t)b + 1] = used;
        }
    }
    for (int64_t b = 0; b < nb; ++b) p->row_off[(size_t)b + 1] += p->row_off[(size_t)b];
    p->rows.resize((size_t)p->row_off[(size_t)nb]);
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        std::vector<int32_t> cnt((size_t)d, 0), first((size_t)batch + 2), order((size_t)d);
        std::vector<uint16_t> slot((size_t)(d * batch));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t r0 = b * batch, r1 = std::min(n, r0 + batch);
            int64_t used = 0;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t o = offsets_[(size_t)r]; o < offsets_[(size_t)r + 1]; ++o) {
                    const int32_t k = idx_[(size_t)o];
                    const int32_t c = cnt[(size_t)k];
                    if (c == 0) order[(size_t)used++] = k;
                    slot[(size_t)(k * batch + c)] = (uint16_t)(((r - r0) << 8) | val_[(size_t)o]);
                    cnt[(size_t)k] = c + 1;
                }
            // Rows by count (stable), then each row's entries.
            for (int64_t c = 0; c <= batch + 1; ++c) first[(size_t)c] = 0;
            for (int64_t u = 0; u < used; ++u) ++first[(size_t)cnt[(size_t)order[(size_t)u]] + 1];
            for (int64_t c = 1; c <= batch; ++c) p->ngroup[(size_t)(b * batch + c - 1)] = first[(size_t)c + 1];
            for (int64_t c = 1; c <= batch + 1; ++c) first[(size_t)c] += first[(size_t)c - 1];
            uint16_t* rows = p->rows.data() + p->row_off[(size_t)b];
            for (int64_t u = 0; u < used; ++u) {
                const int32_t k = order[(size_t)u];
                rows[first[(size_t)cnt[(size_t)k]]++] = (uint16_t)k;
            }
            uint16_t* e = p->ent.data() + p->ent_off[(size_t)b];
            for (int64_t u = 0; u < used; ++u) {
                const int32_t k = rows[u];
                for (int32_t t = 0; t < cnt[(size_t)k]; ++t) *e++ = slot[(size_t)(k * batch + t)];
                cnt[(size_t)k] = 0;
            }
        }
    }
    p->view = BatchPlan{batch, n, p->row_off.data(), p->ent_off.data(), p->rows.data(), p->ent.data(), p->ngroup.data()};
    plan_ = std::move(p);
    return plan_->view;
}

}  // namespace mm
