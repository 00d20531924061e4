// The model: ModelF32 and ModelF64 (parameters, optimizer state, train_epoch, evaluate).
// Registered after register_data: train_epoch and evaluate take a NonzeroIndex or BatchPlan.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bindings/common.hpp"
#include "data/batch_plan.hpp"
#include "data/nonzero_index.hpp"
#include "engine/mlp.hpp"
#include "kernels/kernels.hpp"

using namespace mm;
using namespace mm::bindings;

namespace {

// An index or plan holds pixels listed from one array: only that array may use it.
void check_built_from(const InputView& source, const InputView& x, const char* what) {
    if (!same_view(source, x)) throw py::value_error(std::string(what) + " was built for another array");
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

}  // namespace

void mm::bindings::register_model(py::module_& m) {
    bind_model<float>(m, "ModelF32");
    bind_model<double>(m, "ModelF64");
}
