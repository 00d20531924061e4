#include "engine/mlp.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace mm {

namespace {
constexpr size_t kAlign = 64;
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

template <class T>
Model<T>::Model(std::vector<int64_t> sizes) : sizes_(std::move(sizes)) {
    if (sizes_.size() < 2 || (int)sizes_.size() - 1 > kMaxLayers)
        throw std::invalid_argument("layer sizes: need 2 to " + std::to_string(kMaxLayers + 1) + " entries");
    for (int64_t s : sizes_)
        if (s < 1 || s > (int64_t(1) << 24)) throw std::invalid_argument("layer sizes must be in [1, 2^24]");
    const size_t per_align = kAlign / sizeof(T);
    size_t total = 0;
    std::vector<size_t> offs;
    for (int l = 0; l < nlayers(); ++l) {
        offs.push_back(total);
        total += round_up((size_t)(sizes_[l] * sizes_[l + 1]), per_align);
        offs.push_back(total);
        total += round_up((size_t)sizes_[l + 1], per_align);
    }
    stride_ = total;
    const size_t copies = 1 + kStateSlots;
    if (total > (SIZE_MAX - kAlign) / sizeof(T) / copies) throw std::bad_alloc();
    raw_ = std::calloc(total * copies * sizeof(T) + kAlign, 1);
    if (!raw_) throw std::bad_alloc();
    params_ = reinterpret_cast<T*>(round_up(reinterpret_cast<uintptr_t>(raw_), kAlign));
    for (int l = 0; l < nlayers(); ++l) {
        w_.push_back(params_ + offs[2 * l]);
        b_.push_back(params_ + offs[2 * l + 1]);
    }
    for (size_t s = 1; s < copies; ++s)
        for (int l = 0; l < nlayers(); ++l) {
            sw_.push_back(params_ + s * stride_ + offs[2 * l]);
            sb_.push_back(params_ + s * stride_ + offs[2 * l + 1]);
        }
}

template <class T>
void Model<T>::zero_state() {
    std::memset(params_ + stride_, 0, sizeof(T) * stride_ * kStateSlots);
}

template <class T>
Model<T>::~Model() { std::free(raw_); }

template <class T>
size_t Model<T>::num_params() const {
    size_t n = 0;
    for (int l = 0; l < nlayers(); ++l) n += (size_t)(sizes_[l] * sizes_[l + 1] + sizes_[l + 1]);
    return n;
}

template class Model<float>;
template class Model<double>;

}  // namespace mm
