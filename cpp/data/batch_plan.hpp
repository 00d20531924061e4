// The once-per-fit plan of every batch when batches are taken in order (no
// shuffling): each step's update lists and forward groups, listed from the
// pixels once instead of by every thread at every step. See BatchPlan in
// kernels/kernels.hpp for the layout; about 6 bytes per nonzero pixel, ~50 MB for MNIST.
#pragma once
#include <cstdint>
#include <exception>
#include <vector>

#include "kernels/kernels.hpp"

namespace mm {

// Thrown by BatchPlanData's constructor when its stop function asked it to stop.
struct PlanInterrupted : std::exception {
    const char* what() const noexcept override { return "batch plan interrupted"; }
};

class BatchPlanData {
public:
    // x must be uint8 with at most 65536 columns, 1 <= batch <= kFastMaxBatch
    // (checked by the caller). stop (optional) is called with ctx between
    // rounds of blocks (a few milliseconds each); nonzero throws PlanInterrupted.
    BatchPlanData(const InputView& x, int64_t batch, int nthreads, int (*stop)(void*) = nullptr, void* ctx = nullptr);
    BatchPlanData(const BatchPlanData&) = delete;  // view_ points into the vectors below
    BatchPlanData& operator=(const BatchPlanData&) = delete;
    const BatchPlan& view() const { return view_; }
    int64_t rows() const { return view_.n; }
    int64_t batch() const { return view_.batch; }
    const InputView& source() const { return source_; }  // the view it was built from
    int64_t nbytes() const;

private:
    // Builds the plan from x, or from its index nz when given; false when the
    // pixels changed between the two passes (the plan is then unusable).
    bool build(const InputView& x, const NonzeroIndex* nz, int64_t batch, int nthreads, int (*stop)(void*), void* ctx);
    std::vector<int64_t> row_off_, ent_off_, fwd_off_;
    std::vector<uint16_t> rows_, ent_, fk_;
    std::vector<int32_t> fpat_;  // a group's union can hold all 65536 inputs
    std::vector<uint8_t> fx_, fperm_;
    std::vector<int32_t> ngroup_;
    std::vector<uint32_t> gram_;
    BatchPlan view_{};
    InputView source_;
};

}  // namespace mm
