// The model: layer sizes and all parameters in one allocation.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"

namespace mm {

// Parameters are laid out layer by layer, W0 b0 W1 b1 ..., each segment starting
// on a 64-byte boundary; W_l is (sizes[l], sizes[l+1]) row-major, b_l is (sizes[l+1],).
// The optimizer's kStateSlots state arrays follow in the same allocation, each
// laid out as the parameters are (slot s of W_l at weight(l) + (s + 1) * stride).
// The allocation is zeroed lazily (calloc): state pages that no optimizer
// touches cost no memory.
template <class T>
class Model {
public:
    explicit Model(std::vector<int64_t> sizes);  // parameters start at zero
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const std::vector<int64_t>& sizes() const { return sizes_; }
    int nlayers() const { return (int)sizes_.size() - 1; }
    T* weight(int l) { return w_[l]; }
    T* bias(int l) { return b_[l]; }
    T* state_weight(int slot, int l) { return sw_[(size_t)slot * nlayers() + l]; }
    T* state_bias(int slot, int l) { return sb_[(size_t)slot * nlayers() + l]; }
    T* const* state_weights() { return sw_.data(); }  // [slot * nlayers + l]
    T* const* state_biases() { return sb_.data(); }
    void zero_state();
    size_t num_params() const;
    Activation activation() const { return act_; }
    void set_activation(Activation a) { act_ = a; }
    int64_t opt_step = 0;  // steps the optimizer's state has taken (Adam's t before the next step)
    NetView<T> view() { return NetView<T>{nlayers(), sizes_.data(), w_.data(), b_.data(), act_}; }

private:
    std::vector<int64_t> sizes_;
    void* raw_ = nullptr;      // what calloc returned
    T* params_ = nullptr;      // raw_ aligned to 64 bytes
    size_t stride_ = 0;        // elements per copy (parameters, then each state slot)
    std::vector<T*> w_, b_, sw_, sb_;
    Activation act_ = Activation::relu;
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace mm
