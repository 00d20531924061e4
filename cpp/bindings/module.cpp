// The only file that knows about Python: converts arguments, checks what the
// C++ side assumes, releases the GIL around the work, and wraps results as NumPy
// arrays. The Python package (python/mnist_mlp) validates user input first;
// the checks here are the last line, so a bad call can never reach the kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "data/batch_plan.hpp"
#include "data/idx.hpp"
#include "kernels/kernels.hpp"
#include "engine/mlp.hpp"
#include "data/nonzero_index.hpp"
#include "engine/threads.hpp"

namespace py = pybind11;
using namespace mm;

namespace {

#define STR_(x) #x
#define STR(x) STR_(x)

py::dtype idx_dtype(uint8_t code) {
    switch (code) {
        case 0x08: return py::dtype("u1");
        case 0x09: return py::dtype("i1");
        case 0x0B: return py::dtype("i2");
        case 0x0C: return py::dtype("i4");
        case 0x0D: return py::dtype("f4");
        case 0x0E: return py::dtype("f8");
    }
    throw IdxError("unknown IDX type code");
}

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

py::array read_from(ByteSource& src, const std::string& name) {
    IdxHeader h = read_idx_header(src, name);
    // NumPy computes strides from every nonzero dimension, so even an empty array
    // needs their product (times the itemsize) to fit in a signed size.
    uint64_t span = h.itemsize;
    for (uint64_t d : h.dims)
        if (d && span > (uint64_t)PY_SSIZE_T_MAX / d) {
            throw IdxError(name + ": NumPy cannot make this array: its dimensions are too large");
        } else if (d) {
            span *= d;
        }
    std::vector<py::ssize_t> shape(h.dims.begin(), h.dims.end());
    py::array out(idx_dtype(h.type_code), shape);
    void* dst = out.mutable_data();
    // Between chunks: Ctrl-C (a 1 GiB gzip file takes seconds to inflate).
    StopCheck stop;
    stop.progress = py::none();
    try {
        py::gil_scoped_release nogil;
        read_idx_body(src, h, dst, name, &StopCheck::signals, &stop);
    } catch (const IdxInterrupted&) {
        stop.rethrow();
        throw;
    }
    return out;
}

// path: bytes (os.fsencode: any name the OS accepts); name: a printable str.
py::array read_idx_path(const py::bytes& path, const std::string& name) {
    const std::string p = path;
    std::unique_ptr<ByteSource> src;
    {
        py::gil_scoped_release nogil;
        src = open_idx_file(p, name);
    }
    return read_from(*src, name);
}

py::array read_idx_buffer(py::buffer data, const std::string& name) {
    py::buffer_info info = data.request();
    if (info.ndim != 1 || info.itemsize != 1 || (info.ndim == 1 && info.strides[0] != 1))
        throw py::value_error(name + ": expected a contiguous bytes-like object");
    auto src = open_idx_memory(info.ptr, (size_t)info.size, name);
    return read_from(*src, name);
}

py::bytes encode_idx_array(py::array arr, int type_code) {
    if (!(arr.flags() & py::array::c_style)) throw py::value_error("encode_idx: array must be C-contiguous");
    if ((size_t)arr.itemsize() != idx_itemsize((uint8_t)type_code))
        throw py::value_error("encode_idx: itemsize does not match the type code");
    std::vector<uint64_t> dims(arr.shape(), arr.shape() + arr.ndim());
    auto buf = encode_idx((uint8_t)type_code, dims, arr.data());
    return py::bytes(reinterpret_cast<const char*>(buf.data()), buf.size());
}

InputView input_view(const py::array& x, int64_t features) {
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

using Labels = py::array_t<int32_t, py::array::c_style>;

// An index or plan holds pixels listed from one array: only that array may use it.
void check_built_from(const InputView& source, const InputView& x, const char* what) {
    if (!same_view(source, x)) throw py::value_error(std::string(what) + " was built for another array");
}

void check_labels(const Labels& y, int64_t n, int64_t classes) {
    if (y.ndim() != 1 || y.shape(0) != n) throw py::value_error("labels must be int32 of shape (n,)");
    const int32_t* p = y.data();
    for (int64_t i = 0; i < n; ++i)
        if (p[i] < 0 || p[i] >= classes)
            throw py::value_error("label " + std::to_string(p[i]) + " at index " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(classes) + ")");
}

// Threads for a call (engine/threads.hpp decides); called with the GIL held. When the
// system would not start all of them, the call runs with fewer and says so.
int call_threads(std::optional<int> n) {
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

template <class T>
const Kernels<T>& kernels() {
    const Kernels<T>* k = get_kernels<T>();
    if (!k) throw std::runtime_error("no kernels for this CPU");
    return *k;
}

template <class T>
py::array param_view(py::object owner, T* ptr, std::vector<py::ssize_t> shape) {
    return py::array(py::dtype::of<T>(), shape, {}, ptr, owner);
}

// The update stage's configuration from the dict optim.py builds (every key
// present; the Python layer has validated the values).
OptConfig opt_config(const py::dict& d) {
    OptConfig o;
    const std::string kind = d["kind"].cast<std::string>();
    if (kind == "sgd") o.kind = OptKind::sgd;
    else if (kind == "adam") o.kind = OptKind::adam;
    else if (kind == "rmsprop") o.kind = OptKind::rmsprop;
    else if (kind == "sgd_sklearn") o.kind = OptKind::sgd_sklearn;
    else if (kind == "adam_sklearn") o.kind = OptKind::adam_sklearn;
    else throw py::value_error("unknown optimizer kind '" + kind + "'");
    o.lr = d["lr"].cast<double>();
    o.momentum = d["momentum"].cast<double>();
    o.dampening = d["dampening"].cast<double>();
    o.nesterov = d["nesterov"].cast<bool>();
    o.weight_decay = d["weight_decay"].cast<double>();
    o.decoupled = d["decoupled"].cast<bool>();
    o.decay_biases = d["decay_biases"].cast<bool>();
    o.decay_over_rows = d["decay_over_rows"].cast<bool>();
    o.beta1 = d["beta1"].cast<double>();
    o.beta2 = d["beta2"].cast<double>();
    o.eps = d["eps"].cast<double>();
    o.amsgrad = d["amsgrad"].cast<bool>();
    o.alpha = d["alpha"].cast<double>();
    o.centered = d["centered"].cast<bool>();
    if (!(o.lr > 0) || !std::isfinite(o.lr)) throw py::value_error("lr must be a positive finite number");
    return o;
}

Activation activation_named(const std::string& a) {
    if (a == "relu") return Activation::relu;
    if (a == "tanh") return Activation::tanh;
    if (a == "logistic") return Activation::logistic;
    if (a == "identity") return Activation::identity;
    throw py::value_error("activation must be 'relu', 'tanh', 'logistic' or 'identity', got '" + a + "'");
}
const char* activation_name(Activation a) {
    switch (a) {
        case Activation::tanh: return "tanh";
        case Activation::logistic: return "logistic";
        case Activation::identity: return "identity";
        case Activation::relu: break;
    }
    return "relu";
}

template <class T>
void bind_model(py::module_& m, const char* name) {
    using M = Model<T>;
    py::class_<M>(m, name)
        .def(py::init<std::vector<int64_t>>(), py::arg("sizes"))
        .def_property_readonly("sizes", &M::sizes)
        .def_property_readonly("num_params", &M::num_params)
        .def("weights", [](py::object self) {
            M& mo = self.cast<M&>();
            py::list out;
            for (int l = 0; l < mo.nlayers(); ++l)
                out.append(param_view<T>(self, mo.weight(l), {mo.sizes()[l], mo.sizes()[l + 1]}));
            return out;
        })
        .def("biases", [](py::object self) {
            M& mo = self.cast<M&>();
            py::list out;
            for (int l = 0; l < mo.nlayers(); ++l) out.append(param_view<T>(self, mo.bias(l), {mo.sizes()[l + 1]}));
            return out;
        })
        .def_property(
            "activation", [](const M& mo) { return std::string(activation_name(mo.activation())); },
            [](M& mo, const std::string& a) { mo.set_activation(activation_named(a)); })
        // Views of the optimizer's state slot `slot`: (weights, biases), shaped as the parameters.
        .def("state", [](py::object self, int slot) {
            M& mo = self.cast<M&>();
            if (slot < 0 || slot >= kStateSlots)
                throw py::value_error("state slot must be in [0, " + std::to_string(kStateSlots) + ")");
            py::list ws, bs;
            for (int l = 0; l < mo.nlayers(); ++l) {
                ws.append(param_view<T>(self, mo.state_weight(slot, l), {mo.sizes()[l], mo.sizes()[l + 1]}));
                bs.append(param_view<T>(self, mo.state_bias(slot, l), {mo.sizes()[l + 1]}));
            }
            return py::make_tuple(ws, bs);
        }, py::arg("slot"))
        .def("zero_state", &M::zero_state)
        .def_property(
            "opt_step", [](const M& mo) { return mo.opt_step; },
            [](M& mo, int64_t s) {
                if (s < 0) throw py::value_error("the optimizer's step count must be >= 0");
                mo.opt_step = s;
            })
        .def(
            "train_epoch",
            [](M& mo, const py::array& x, const Labels& y, std::optional<py::array_t<int64_t, py::array::c_style>> order,
               int64_t batch, double lr, bool sparse, bool stop_on_nonfinite, std::optional<int> threads,
               const NonzeroIndexData* index, py::object progress, const BatchPlanData* plan,
               std::optional<py::dict> opt, std::optional<std::vector<double>> dropout, uint64_t dropout_seed,
               int64_t epoch, bool sklearn_loss) {
                InputView xv = input_view(x, mo.sizes()[0]);
                const int64_t n = xv.rows;
                check_labels(y, n, mo.sizes().back());
                if (n < 1) throw py::value_error("x has no rows to train on");
                if (batch < 1) throw py::value_error("batch_size must be >= 1");
                if (batch > n) batch = n;  // one batch of everything: the same step, and sizes stay small
                const int64_t* ord = nullptr;
                if (order) {
                    if (order->ndim() != 1 || order->shape(0) != n) throw py::value_error("order must have shape (n,)");
                    ord = order->data();
                    for (int64_t i = 0; i < n; ++i)
                        if (ord[i] < 0 || ord[i] >= n) throw py::value_error("order holds an index out of range");
                }
                TrainJob<T> job{mo.view(), xv, y.data(), ord, n, batch, (T)lr, sparse, stop_on_nonfinite,
                                &StopCheck::check, nullptr};
                if (opt) {
                    job.opt = opt_config(*opt);
                    if (job.opt.lr != lr) throw py::value_error("lr and the optimizer's lr differ");
                } else {
                    job.opt.lr = lr;
                }
                job.opt.step0 = mo.opt_step;
                job.state_w = mo.state_weights();
                job.state_b = mo.state_biases();
                if (dropout) {
                    if ((int64_t)dropout->size() != mo.nlayers() - 1)
                        throw py::value_error("dropout needs one rate per hidden layer");
                    for (double p : *dropout)
                        if (!(p >= 0 && p < 1)) throw py::value_error("dropout rates must be in [0, 1)");
                    job.dropout = dropout->data();
                }
                job.dropout_seed = dropout_seed;
                job.epoch = epoch;
                job.sklearn_loss = sklearn_loss;
                StopCheck stop;
                stop.progress = progress;
                stop.total = (n + batch - 1) / batch;
                job.stop_ctx = &stop;
                job.nthreads = call_threads(threads);
                NonzeroIndex nzv{};
                if (index) {
                    check_built_from(index->source(), xv, "the nonzero index");
                    nzv = index->view();
                    job.nz = &nzv;
                }
                if (plan) {
                    check_built_from(plan->source(), xv, "the batch plan");
                    if (plan->batch() != batch) throw py::value_error("the batch plan was built for another batch_size");
                    if (ord) throw py::value_error("a batch plan is for batches in order: pass order=None");
                    // Only the fused variant reads it (engine_choice).
                    job.plan = &plan->view();
                }
                const Kernels<T>& k = kernels<T>();
                {
                    py::gil_scoped_release nogil;
                    k.train_epoch(job);
                }
                mo.opt_step += job.batches_done;  // also when interrupted: those steps were taken
                stop.rethrow();
                py::dict r;
                r["batches"] = job.batches_done;
                r["samples"] = job.samples_done;
                r["loss_sum"] = job.loss_sum;
                r["first_nonfinite_batch"] = job.first_nonfinite_batch;
                r["correct"] = job.correct;
                r["penalty_sum"] = job.penalty_sum;
                r["kernel"] = job.kernel;
                return r;
            },
            py::arg("x"), py::arg("y"), py::arg("order"), py::arg("batch_size"), py::arg("lr"),
            py::arg("sparse") = true, py::arg("stop_on_nonfinite") = true, py::arg("num_threads") = py::none(),
            py::arg("index") = nullptr, py::arg("progress") = py::none(), py::arg("plan") = nullptr,
            py::arg("optimizer") = py::none(), py::arg("dropout") = py::none(), py::arg("dropout_seed") = 0,
            py::arg("epoch") = 0, py::arg("sklearn_loss") = false)
        .def(
            "evaluate",
            [](M& mo, const py::array& x, std::optional<Labels> y, bool want_probs, bool want_pred,
               std::optional<int> threads, const BatchPlanData* plan) {
                InputView xv = input_view(x, mo.sizes()[0]);
                const int64_t n = xv.rows, classes = mo.sizes().back();
                if (y) check_labels(*y, n, classes);
                if (plan) check_built_from(plan->source(), xv, "the batch plan");
                py::object probs = py::none(), pred = py::none();
                EvalJob<T> job{mo.view(), xv, y ? y->data() : nullptr, nullptr, n, call_threads(threads)};
                if (plan) job.plan = &plan->view();
                if (want_probs) {
                    py::array_t<T> p({(py::ssize_t)n, (py::ssize_t)classes});
                    job.probs = p.mutable_data();
                    probs = p;
                }
                if (want_pred) {
                    py::array_t<int32_t> p({(py::ssize_t)n});
                    job.pred = p.mutable_data();
                    pred = p;
                }
                const Kernels<T>& k = kernels<T>();
                // In slices of about 2^34 multiply-adds (a fraction of a second), with
                // a check for Ctrl-C between them: predict on millions of rows could
                // not be interrupted. fit's own evaluation (with its plan) is one call.
                int64_t per_row = 0;
                for (size_t l = 0; l + 1 < mo.sizes().size(); ++l) per_row += mo.sizes()[l] * mo.sizes()[l + 1];
                const int64_t slice =
                    plan ? n : std::min<int64_t>(65536, std::max<int64_t>(1024, (int64_t(1) << 34) / std::max<int64_t>(per_row, 1)));
                const int64_t esize = x.itemsize();
                for (int64_t s0 = 0; s0 < n; s0 += slice) {
                    EvalJob<T> part = job;
                    part.n = std::min(slice, n - s0);
                    part.x.rows = part.n;
                    part.x.data = static_cast<const char*>(xv.data) + s0 * xv.row_stride * esize;
                    if (part.y) part.y += s0;
                    if (part.probs) part.probs += s0 * classes;
                    if (part.pred) part.pred += s0;
                    {
                        py::gil_scoped_release nogil;
                        k.evaluate(part);
                    }
                    job.loss_sum += part.loss_sum;
                    job.correct += part.correct;
                    if (s0 + slice < n && PyErr_CheckSignals() != 0) throw py::error_already_set();
                }
                return py::make_tuple(job.loss_sum, job.correct, probs, pred);
            },
            py::arg("x"), py::arg("y") = py::none(), py::arg("probs") = false, py::arg("pred") = false,
            py::arg("num_threads") = py::none(), py::arg("plan") = nullptr);
}

// C = op(a) . op(b) into a new array; the operands are checked by the caller.
template <class T>
py::array_t<T> gemm_run(const T* a, int64_t lda, bool ta, const T* b, int64_t ldb, bool tb, int64_t m, int64_t n,
                        int64_t k, int threads, bool naive) {
    py::array_t<T> c({(py::ssize_t)m, (py::ssize_t)n});
    GemmJob<T> g{m, n, k, a, lda, ta, b, ldb, tb, c.mutable_data(), n, threads};
    const Kernels<T>& kern = kernels<T>();
    auto fn = naive ? kern.gemm_naive : kern.gemm;
    if (m * n * (k + 1) < (int64_t(1) << 16)) {
        fn(g);  // a few microseconds at most (k = 0 still fills m x n): not worth releasing the GIL
    } else {
        py::gil_scoped_release nogil;
        fn(g);
    }
    return c;
}

// op(a) is (m, k), op(b) is (kb, n), for 2-D a and b.
struct OpShapes {
    int64_t m, k, kb, n;
};
OpShapes op_shapes(const py::array& a, const py::array& b, bool ta, bool tb) {
    return {ta ? a.shape(1) : a.shape(0), ta ? a.shape(0) : a.shape(1), tb ? b.shape(1) : b.shape(0),
            tb ? b.shape(0) : b.shape(1)};
}

template <class T>
py::array_t<T> gemm_impl(const py::array_t<T>& a, const py::array_t<T>& b, bool ta, bool tb,
                         std::optional<int> threads, const std::string& algo) {
    if (a.ndim() != 2 || b.ndim() != 2) throw py::value_error("matmul operands must be 2-D");
    if (!(a.flags() & py::array::c_style) || !(b.flags() & py::array::c_style))
        throw py::value_error("matmul operands must be C-contiguous");
    const OpShapes s = op_shapes(a, b, ta, tb);
    if (s.k != s.kb)
        throw py::value_error("matmul: inner dimensions differ (" + std::to_string(s.k) + " vs " + std::to_string(s.kb) +
                              ")");
    if (algo != "naive" && algo != "auto") throw py::value_error("algo must be 'auto' or 'naive'");
    return gemm_run<T>(a.data(), a.shape(1), ta, b.data(), b.shape(1), tb, s.m, s.n, s.k, call_threads(threads),
                       algo == "naive");
}

std::string shape_str(int64_t r, int64_t c) { return "(" + std::to_string(r) + ", " + std::to_string(c) + ")"; }

template <class T>
py::object gemm_fast_t(py::handle ah, py::handle bh, bool ta, bool tb, std::optional<int> threads) {
    const auto a = py::reinterpret_borrow<py::array>(ah), b = py::reinterpret_borrow<py::array>(bh);
    constexpr int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (a.ndim() != 2 || b.ndim() != 2 || (a.flags() & need) != need || (b.flags() & need) != need)
        return py::none();
    const OpShapes s = op_shapes(a, b, ta, tb);
    if (s.k != s.kb)  // the message of ops.matmul's own check
        throw py::value_error("matmul: inner dimensions differ: op(a) is " + shape_str(s.m, s.k) + ", op(b) is " +
                              shape_str(s.kb, s.n));
    return gemm_run<T>(static_cast<const T*>(a.data()), a.shape(1), ta, static_cast<const T*>(b.data()), b.shape(1),
                       tb, s.m, s.n, s.k, call_threads(threads), false);
}

// ops.matmul's common case, checked here rather than in Python (the Python
// checks cost about a microsecond, as long as a whole small product): two
// aligned C-contiguous 2-D arrays of one float dtype and num_threads None or an
// int >= 1. Anything else returns None, and ops.matmul converts and validates.
py::object gemm_fast(py::handle a, py::handle b, py::handle trans_a, py::handle trans_b, py::handle threads) {
    const int ta = PyObject_IsTrue(trans_a.ptr()), tb = PyObject_IsTrue(trans_b.ptr());  // bool(x), as Python's
    if (ta < 0 || tb < 0) throw py::error_already_set();
    std::optional<int> nt;
    if (!threads.is_none()) {
        if (!PyLong_CheckExact(threads.ptr())) return py::none();
        const long long v = PyLong_AsLongLong(threads.ptr());
        if (v < 1 || v > 1 << 20) {
            PyErr_Clear();
            return py::none();
        }
        nt = (int)v;
    }
    if (py::array_t<float>::check_(a) && py::array_t<float>::check_(b)) return gemm_fast_t<float>(a, b, ta != 0, tb != 0, nt);
    if (py::array_t<double>::check_(a) && py::array_t<double>::check_(b)) return gemm_fast_t<double>(a, b, ta != 0, tb != 0, nt);
    return py::none();
}

// ops.matmul itself, as a plain CPython function: a Python wrapper around
// gemm_fast cost 80 ns and pybind11's keyword matching 230 ns, against 700 ns
// for a whole 8x10.(300x10)^T product. What the fast path refuses (other
// dtypes, strided or misaligned arrays, lists, bad shapes or thread counts)
// goes to mnist_mlp.ops._matmul_checked, which converts, validates and calls gemm.
const char* const kMatmulArgs[] = {"a", "b", "trans_a", "trans_b", "num_threads"};

PyObject* matmul_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    try {
        PyObject* v[5] = {nullptr, nullptr, Py_False, Py_False, Py_None};
        bool given[5] = {};
        if (nargs > 4) {
            PyErr_Format(PyExc_TypeError, "matmul() takes from 2 to 4 positional arguments but %zd were given", nargs);
            return nullptr;
        }
        for (Py_ssize_t i = 0; i < nargs; ++i) v[i] = args[i], given[i] = true;
        const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        for (Py_ssize_t j = 0; j < nkw; ++j) {
            PyObject* name = PyTuple_GET_ITEM(kwnames, j);
            int idx = 0;
            while (idx < 5 && PyUnicode_CompareWithASCIIString(name, kMatmulArgs[idx]) != 0) ++idx;
            if (idx == 5) {
                PyErr_Format(PyExc_TypeError, "matmul() got an unexpected keyword argument '%U'", name);
                return nullptr;
            }
            if (given[idx]) {
                PyErr_Format(PyExc_TypeError, "matmul() got multiple values for argument '%s'", kMatmulArgs[idx]);
                return nullptr;
            }
            v[idx] = args[nargs + j], given[idx] = true;
        }
        for (int i = 0; i < 2; ++i)
            if (!given[i]) {
                PyErr_Format(PyExc_TypeError, "matmul() missing required argument '%s'", kMatmulArgs[i]);
                return nullptr;
            }
        const py::handle a(v[0]), b(v[1]), ta(v[2]), tb(v[3]), threads(v[4]);
        py::object out = gemm_fast(a, b, ta, tb, threads);
        if (out.is_none()) out = py::module_::import("mnist_mlp.ops").attr("_matmul_checked")(a, b, ta, tb, threads);
        return out.release().ptr();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception& e) {
        e.set_error();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {  // nothing may unwind through CPython's C frames
        PyErr_SetString(PyExc_RuntimeError, "matmul: unknown C++ exception");
    }
    return nullptr;
}

PyMethodDef kMatmulDef = {
    "matmul", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&matmul_fastcall)),
    METH_FASTCALL | METH_KEYWORDS,
    "matmul(a, b, trans_a=False, trans_b=False, *, num_threads=None)\n--\n\n"
    "``op(a) @ op(b)`` where op transposes when asked, without forming the\n"
    "transpose. Cache-blocked, vectorised for the CPU and parallel (OpenMP).\n"
    "float32 or float64 operands of one dtype; the result is a new array."};

template <class T>
py::array_t<T> relu_impl(const py::array_t<T, py::array::c_style>& x) {
    py::array_t<T> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    kernels<T>().relu(out.mutable_data(), x.data(), (int64_t)x.size());
    return out;
}

template <class T>
py::tuple softmax_xent_impl(const py::array_t<T, py::array::c_style>& z, std::optional<Labels> y) {
    if (z.ndim() != 2) throw py::value_error("logits must be 2-D (rows, classes)");
    const int64_t rows = z.shape(0), cols = z.shape(1);
    if (cols < 1) throw py::value_error("logits need at least one class");
    if (y) check_labels(*y, rows, cols);
    py::array_t<T> probs({(py::ssize_t)rows, (py::ssize_t)cols});
    py::object grad = py::none();
    T* g = nullptr;
    if (y) {
        py::array_t<T> ga({(py::ssize_t)rows, (py::ssize_t)cols});
        g = ga.mutable_data();
        grad = ga;
    }
    double loss = kernels<T>().softmax_xent(probs.mutable_data(), g, z.data(), y ? y->data() : nullptr, rows, cols);
    return py::make_tuple(probs, grad, y ? py::object(py::float_(loss)) : py::object(py::none()));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "mnist_mlp native core (private; use the mnist_mlp package)";
    m.attr("__version__") = STR(VERSION_INFO);
    m.attr("HAVE_ZLIB") = have_zlib();
    m.attr("FAST_MAX_BATCH") = kFastMaxBatch;
#ifdef _OPENMP
    m.attr("HAVE_OPENMP") = true;
#else
    m.attr("HAVE_OPENMP") = false;
#endif
    py::register_exception<IdxError>(m, "IdxError", PyExc_ValueError);

    m.def("read_idx", &read_idx_path, py::arg("path"), py::arg("name"));
    m.def("read_idx_bytes", &read_idx_buffer, py::arg("data"), py::arg("name") = "<bytes>");
    m.def("encode_idx", &encode_idx_array, py::arg("array"), py::arg("type_code"));

    m.def("max_threads", [] { return call_threads(std::nullopt); });
    m.def("in_forked_child", &mm::in_forked_child);
    m.def("cache_sizes", [] {
        const CacheSizes& c = cache_sizes();
        return py::make_tuple(c.l1, c.l2, c.l3);
    });
    m.def("best_isa", &best_isa);
    m.def("current_isa", &current_isa);
    m.def("set_isa", [](const std::string& isa) {
        if (!set_isa(isa.c_str())) throw py::value_error("ISA '" + isa + "' is unknown or not supported by this CPU");
    });

    m.def("gemm", &gemm_impl<float>, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
          py::arg("num_threads") = py::none(), py::arg("algo") = "auto");
    m.def("gemm", &gemm_impl<double>, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
          py::arg("num_threads") = py::none(), py::arg("algo") = "auto");
    m.add_object("matmul", py::reinterpret_steal<py::object>(PyCFunction_NewEx(&kMatmulDef, nullptr, m.attr("__name__").ptr())));
    m.def("relu", &relu_impl<float>, py::arg("x"));
    m.def("relu", &relu_impl<double>, py::arg("x"));
    m.def("softmax_xent", &softmax_xent_impl<float>, py::arg("z"), py::arg("y") = py::none());
    m.def("softmax_xent", &softmax_xent_impl<double>, py::arg("z"), py::arg("y") = py::none());

    // What fit prepares once for the engine, by the same rule as its kernel
    // choice: "plan" (a BatchPlan: the fused variant, batches in order), "index"
    // (a NonzeroIndex: the first layer over the nonzero pixels) or "none".
    m.def(
        "training_aid",
        [](int nlayers, int64_t batch, int64_t n, bool u8, int64_t features, bool shuffled, bool sparse,
           const std::string& activation, bool plain) -> std::string {
            if (!u8 || !sparse || features > 65536) return "none";
            if (!shuffled && fused_one_hidden(nlayers, std::min(batch, n), activation_named(activation), plain))
                return "plan";
            return "index";
        },
        py::arg("nlayers"), py::arg("batch_size"), py::arg("n"), py::arg("uint8"), py::arg("features"),
        py::arg("shuffled"), py::arg("sparse"), py::arg("activation") = "relu", py::arg("plain") = true);

    py::class_<NonzeroIndexData>(m, "NonzeroIndex")
        .def(py::init([](const py::array& x, std::optional<int> threads) {
                 if (!x.dtype().equal(py::dtype::of<uint8_t>()) || x.ndim() != 2)
                     throw py::type_error("NonzeroIndex needs a 2-D uint8 array");
                 if (x.shape(1) > 65536) throw py::value_error("NonzeroIndex supports at most 65536 features");
                 InputView v = input_view(x, x.shape(1));
                 const int nt = call_threads(threads);
                 py::gil_scoped_release nogil;
                 return new NonzeroIndexData(v, nt);
             }),
             py::arg("x"), py::arg("num_threads") = py::none(), py::keep_alive<1, 2>())
        .def_property_readonly("nbytes", &NonzeroIndexData::nbytes)
        .def_property_readonly("nnz", &NonzeroIndexData::nnz);

    py::class_<BatchPlanData>(m, "BatchPlan")
        .def(py::init([](const py::array& x, int64_t batch, std::optional<int> threads) {
                 if (!x.dtype().equal(py::dtype::of<uint8_t>()) || x.ndim() != 2)
                     throw py::type_error("BatchPlan needs a 2-D uint8 array");
                 if (x.shape(1) > 65536) throw py::value_error("BatchPlan supports at most 65536 features");
                 if (x.shape(0) < 1) throw py::value_error("BatchPlan needs at least one row");
                 if (batch < 1) throw py::value_error("batch_size must be >= 1");
                 InputView v = input_view(x, x.shape(1));
                 batch = std::min<int64_t>(batch, v.rows);  // as train_epoch clamps it
                 if (batch > kFastMaxBatch)
                     throw py::value_error("BatchPlan is for batches of at most " + std::to_string(kFastMaxBatch) +
                                           " rows, got " + std::to_string(batch));
                 const int nt = call_threads(threads);
                 StopCheck stop;
                 stop.progress = py::none();
                 try {
                     py::gil_scoped_release nogil;
                     return new BatchPlanData(v, batch, nt, &StopCheck::signals, &stop);
                 } catch (const PlanInterrupted&) {
                     stop.rethrow();
                     throw;
                 }
             }),
             py::arg("x"), py::arg("batch_size"), py::arg("num_threads") = py::none(), py::keep_alive<1, 2>())
        .def_property_readonly("batch_size", &BatchPlanData::batch)
        .def_property_readonly("nbytes", &BatchPlanData::nbytes);

    bind_model<float>(m, "ModelF32");
    bind_model<double>(m, "ModelF64");
}
