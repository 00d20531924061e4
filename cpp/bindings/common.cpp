// The helpers of common.hpp shared by several register_*.cpp files.
#include "bindings/common.hpp"

#include "engine/threads.hpp"

using namespace mm;

InputView mm::bindings::input_view(const py::array& x, int64_t features) {
    if (x.ndim() != 2) throw py::value_error("x must be 2-D (samples, features)");
    InputType t;
    if (x.dtype().equal(py::dtype::of<uint8_t>())) t = InputType::u8;
    else if (x.dtype().equal(py::dtype::of<float>())) t = InputType::f32;
    else if (x.dtype().equal(py::dtype::of<double>())) t = InputType::f64;
    else throw py::type_error("x must be uint8, float32 or float64");
    const int64_t item = x.itemsize();
    if (x.strides(0) % item || x.strides(1) % item) throw py::value_error("x strides must be whole elements");
    if (x.shape(1) != features)
        throw py::value_error("x has " + std::to_string(x.shape(1)) + " features, the model expects " +
                              std::to_string(features));
    return InputView{x.data(), t, x.shape(0), x.shape(1), x.strides(0) / item, x.strides(1) / item};
}

void mm::bindings::check_labels(const Labels& y, int64_t n, int64_t classes) {
    if (y.ndim() != 1 || y.shape(0) != n) throw py::value_error("labels must be int32 of shape (n,)");
    const int32_t* p = y.data();
    for (int64_t i = 0; i < n; ++i)
        if (p[i] < 0 || p[i] >= classes)
            throw py::value_error("label " + std::to_string(p[i]) + " at index " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(classes) + ")");
}

int mm::bindings::call_threads(std::optional<int> n) {
    const ThreadCount t = mm::resolve_threads(n);
    if (t.reduced) {
        const std::string msg = "mnist_mlp: could only start " + std::to_string(t.threads) + " of " +
                                std::to_string(t.reduced) +
                                " threads (the system's limit on processes or threads); running with " +
                                std::to_string(t.threads);
        if (PyErr_WarnEx(PyExc_RuntimeWarning, msg.c_str(), 1) < 0) throw py::error_already_set();
    }
    return t.threads;
}

Activation mm::bindings::activation_named(const std::string& a) {
    if (a == "relu") return Activation::relu;
    if (a == "tanh") return Activation::tanh;
    if (a == "logistic") return Activation::logistic;
    if (a == "identity") return Activation::identity;
    throw py::value_error("activation must be 'relu', 'tanh', 'logistic' or 'identity', got '" + a + "'");
}
