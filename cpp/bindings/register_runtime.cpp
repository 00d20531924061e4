// The machine and the runtime: threads (engine/threads.hpp), cache sizes, instruction sets.
#include <optional>
#include <string>

#include "bindings/common.hpp"
#include "engine/threads.hpp"
#include "kernels/kernels.hpp"

using namespace mm;

void mm::bindings::register_runtime(py::module_& m) {
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
}
