// The extension module mnist_mlp._core: its build attributes, then each area's
// bindings (bindings/register_*.cpp) in an order where every class is
// registered before a signature names it.
#include "bindings/common.hpp"
#include "data/idx.hpp"
#include "kernels/kernels.hpp"

using namespace mm;
using namespace mm::bindings;

#define STR_(x) #x
#define STR(x) STR_(x)

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
    register_idx(m);
    register_runtime(m);
    register_ops(m);
    register_data(m);
    register_model(m);
}
