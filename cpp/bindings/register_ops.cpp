// The operations on arrays: gemm, matmul (a plain CPython function), relu, softmax_xent.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "kernels/kernels.hpp"

using namespace mm;
using namespace mm::bindings;

namespace {

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

// c + alpha op(a) op(b) into a new array, through GemmJob's accumulate (the
// engine's SGD step inside the weight gradient's product); for the tests.
template <class T>
py::array_t<T> gemm_accumulate_impl(const py::array_t<T>& c, const py::array_t<T>& a, const py::array_t<T>& b,
                                    bool ta, bool tb, double alpha, std::optional<int> threads) {
    if (a.ndim() != 2 || b.ndim() != 2 || c.ndim() != 2) throw py::value_error("gemm_accumulate operands must be 2-D");
    if (!(a.flags() & py::array::c_style) || !(b.flags() & py::array::c_style) || !(c.flags() & py::array::c_style))
        throw py::value_error("gemm_accumulate operands must be C-contiguous");
    const OpShapes s = op_shapes(a, b, ta, tb);
    if (s.k != s.kb || c.shape(0) != s.m || c.shape(1) != s.n)
        throw py::value_error("gemm_accumulate: shapes do not match");
    py::array_t<T> out({(py::ssize_t)s.m, (py::ssize_t)s.n});
    std::copy(c.data(), c.data() + s.m * s.n, out.mutable_data());
    GemmJob<T> g{s.m, s.n, s.k, a.data(), a.shape(1), ta, b.data(), b.shape(1), tb, out.mutable_data(), s.n,
                 call_threads(threads)};
    g.accumulate = true;
    g.alpha = (T)alpha;
    {
        py::gil_scoped_release nogil;
        kernels<T>().gemm(g);
    }
    return out;
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

void mm::bindings::register_ops(py::module_& m) {
    m.def("gemm", &gemm_impl<float>, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
          py::arg("num_threads") = py::none(), py::arg("algo") = "auto");
    m.def("gemm", &gemm_impl<double>, py::arg("a"), py::arg("b"), py::arg("trans_a"), py::arg("trans_b"),
          py::arg("num_threads") = py::none(), py::arg("algo") = "auto");
    m.def("gemm_accumulate", &gemm_accumulate_impl<float>, py::arg("c"), py::arg("a"), py::arg("b"),
          py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("num_threads") = py::none());
    m.def("gemm_accumulate", &gemm_accumulate_impl<double>, py::arg("c"), py::arg("a"), py::arg("b"),
          py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"), py::arg("num_threads") = py::none());
    m.add_object("matmul", py::reinterpret_steal<py::object>(PyCFunction_NewEx(&kMatmulDef, nullptr, m.attr("__name__").ptr())));
    m.def("relu", &relu_impl<float>, py::arg("x"));
    m.def("relu", &relu_impl<double>, py::arg("x"));
    m.def("softmax_xent", &softmax_xent_impl<float>, py::arg("z"), py::arg("y") = py::none());
    m.def("softmax_xent", &softmax_xent_impl<double>, py::arg("z"), py::arg("y") = py::none());
}
