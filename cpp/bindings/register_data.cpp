// What fit prepares once per fit from the data: training_aid (which aid to build),
// NonzeroIndex and BatchPlan.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "data/batch_plan.hpp"
#include "data/nonzero_index.hpp"
#include "kernels/kernels.hpp"

using namespace mm;

void mm::bindings::register_data(py::module_& m) {
    // What fit prepares once for the engine, by the same rule as its kernel
    // choice: "plan" (a BatchPlan: the fused variant, batches in order), "index"
    // (a NonzeroIndex: the first layer over the nonzero pixels) or "none".
    m.def(
        "training_aid",
        [](const std::vector<int64_t>& sizes, int64_t batch, int64_t n, bool u8, int64_t features, bool shuffled,
           bool sparse, const std::string& activation, bool plain) -> std::string {
            if (sizes.size() < 2 || sizes.size() > (size_t)kMaxLayers + 1)
                throw py::value_error("training_aid needs 2 to " + std::to_string(kMaxLayers + 1) + " layer sizes");
            (void)activation_named(activation);  // checked; every activation runs in the panels
            if (!u8 || !sparse || features > 65536) return "none";
            if (plan_applies((int)sizes.size() - 1, sizes.data(), std::min(batch, n), plain, !shuffled)) return "plan";
            return "index";
        },
        py::arg("layer_sizes"), py::arg("batch_size"), py::arg("n"), py::arg("uint8"), py::arg("features"),
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
        .def_property_readonly("nnz", &NonzeroIndexData::nnz)
        .def("csr", [](const NonzeroIndexData& d) {
            // Copies of the lists (row offsets, columns, values), for the tests.
            const NonzeroIndex v = d.view();
            const int64_t n = d.rows(), nnz = d.nnz();
            py::array_t<int64_t> off(n + 1);
            py::array_t<uint16_t> idx(nnz);
            py::array_t<uint8_t> val(nnz);
            std::copy(v.offsets, v.offsets + n + 1, off.mutable_data());
            std::copy(v.idx, v.idx + nnz, idx.mutable_data());
            std::copy(v.val, v.val + nnz, val.mutable_data());
            return py::make_tuple(off, idx, val);
        });

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
}
