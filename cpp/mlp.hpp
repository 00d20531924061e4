// The model: layer sizes and all parameters in one allocation.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels.hpp"

namespace mm {

// Parameters are laid out layer by layer, W0 b0 W1 b1 ..., each segment starting
// on a 64-byte boundary; W_l is (sizes[l], sizes[l+1]) row-major, b_l is (sizes[l+1],).
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
    size_t num_params() const;
    NetView<T> view() { return NetView<T>{nlayers(), sizes_.data(), w_.data(), b_.data()}; }

private:
    std::vector<int64_t> sizes_;
    T* params_ = nullptr;
    std::vector<T*> w_, b_;
};

extern template class Model<float>;
extern template class Model<double>;

}  // namespace mm
