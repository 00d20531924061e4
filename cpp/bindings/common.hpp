// Private to cpp/bindings/: what several register_*.cpp files share. cpp/bindings/
// is the only part of cpp/ that knows about Python: it converts arguments, checks
// what the C++ side assumes, releases the GIL around the work, and wraps results
// as NumPy arrays. The Python package (python/mnist_mlp) validates user input
// first; the checks here are the last line, so a bad call can never reach the
// kernels.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/kernels.hpp"

namespace py = pybind11;

namespace mm {
// Hidden, as pybind11's own namespace is: StopCheck holds pybind11 objects.
namespace bindings __attribute__((visibility("hidden"))) {

// One per area, called in this order by module.cpp (a class is registered
// before any signature that names it).
void register_idx(py::module_& m);      // register_idx.cpp: IdxError, read_idx, read_idx_bytes, encode_idx
void register_runtime(py::module_& m);  // register_runtime.cpp: threads, caches, instruction sets
void register_ops(py::module_& m);      // register_ops.cpp: gemm, matmul, relu, softmax_xent
void register_data(py::module_& m);     // register_data.cpp: training_aid, NonzeroIndex, BatchPlan
void register_model(py::module_& m);    // register_model.cpp: ModelF32, ModelF64 (training, evaluation)

// Interrupts: the epoch loop asks every few milliseconds; we take the GIL just
// long enough to run Python's signal handlers, and stop if one raised.
struct StopCheck {
    std::optional<py::error_already_set> error;
    std::exception_ptr other;  // anything else thrown while calling back into Python
    py::object progress;       // None or progress(batches_done, total_batches)
    int64_t total = 0;
    // Runs on the training loop's thread 0, inside its parallel region: it must
    // not throw, so every failure is stored and reported once the loop returns.
    static int check(void* self, int64_t batches_done) noexcept {
        auto* me = static_cast<StopCheck*>(self);
        try {
            py::gil_scoped_acquire gil;
            if (PyErr_CheckSignals() != 0) {
                me->error.emplace();
                return 1;
            }
            if (!me->progress.is_none()) me->progress(batches_done, me->total);
            return 0;
        } catch (py::error_already_set& e) {
            me->error.emplace(std::move(e));
        } catch (...) {
            me->other = std::current_exception();
        }
        return 1;
    }
    // For work outside the epoch loop (reading a file, planning the batches):
    // signals only, when progress is None.
    static int signals(void* self) noexcept { return check(self, 0); }
    void rethrow() {
        if (error) throw *error;
        if (other) std::rethrow_exception(other);
    }
};

InputView input_view(const py::array& x, int64_t features);

using Labels = py::array_t<int32_t, py::array::c_style>;

void check_labels(const Labels& y, int64_t n, int64_t classes);

// Threads for a call (engine/threads.hpp decides); called with the GIL held. When the
// system would not start all of them, the call runs with fewer and says so.
int call_threads(std::optional<int> n);

template <class T>
const Kernels<T>& kernels() {
    const Kernels<T>* k = get_kernels<T>();
    if (!k) throw std::runtime_error("no kernels for this CPU");
    return *k;
}

Activation activation_named(const std::string& a);

}  // namespace bindings
}  // namespace mm
