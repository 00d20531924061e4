// Hot kernels and the run-time dispatch table that picks their ISA.
//
// kernels_impl.hpp is compiled three times (kernels_generic.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp), each time inside its own namespace and with its own -m flags,
// so nothing compiled for AVX-512 can leak into the generic path through the linker.
// dispatch.cpp fills one Kernels<T> per dtype from the widest set the CPU supports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace mm {

constexpr int kMaxLayers = 64;  // weight matrices per network; the kernels keep fixed tables

[[noreturn]] void throw_bad_alloc();

// A 2-D input array as NumPy holds it: any strides, three element types. The
// Python layer checks shape, dtype and bounds; kernels only read it.
enum class InputType : int { u8 = 0, f32 = 1, f64 = 2 };
struct InputView {
    const void* data;
    InputType type;
    int64_t rows, cols;
    int64_t row_stride, col_stride;  // in elements
};

// Whether two views show the same elements of the same array.
inline bool same_view(const InputView& a, const InputView& b) {
    return a.data == b.data && a.type == b.type && a.rows == b.rows && a.cols == b.cols &&
           a.row_stride == b.row_stride && a.col_stride == b.col_stride;
}

// The nonzero pixels of a uint8 dataset, indexed once per fit (CSR): sample i's
// nonzeros are idx/val[offsets[i] .. offsets[i+1]), in increasing column order.
struct NonzeroIndex {
    const int64_t* offsets;
    const uint16_t* idx;
    const uint8_t* val;
};

// The panel variant of the engine (engine/train_panels.inc) takes batches up to
// kFastMaxBatch, and up to kPanelMaxBatch when the first layer holds most of the
// network's weights; a BatchPlan is for batches up to kFastMaxBatch.
constexpr int64_t kFastMaxBatch = 64;
constexpr int64_t kPanelMaxBatch = 256;

// What the training steps need, for the batches 0..n-1 in order (no
// shuffling), listed from the pixels once per fit instead of every step.
//
// The batches come in blocks of kb = max(1, kPlanSpan / batch) batches, i.e.
// span = kb * batch samples (the last block may be short). Within a block W1 is
// updated once, at its end: the forward of a later batch in the block adds the
// earlier batches' pending updates through their dot products with its pixels,
// x . (W1 - lr X_j^T dH_j) = x . W1 - lr (x . X_j^T) dH_j (same sums, regrouped).
// Update (per block b): rows[row_off[b] .. row_off[b+1]) are the input columns
// the block uses, ordered by how many of its samples use them: ngroup[b * span +
// c - 1] of them are used by c samples. Each row is followed in ent (from
// ent_off[b]) by one entry per sample that uses it, in block order:
// (sample in the block << 8) | pixel value.
// Forward (per block): the block's samples in groups of kPlanGroup (the last may
// be short); group q of block b (index i = b * gpb + q) holds the samples
// fperm[i * kPlanGroup + g] of the block (255: none) and walks the union of their
// nonzero inputs, fk[fwd_off[i] .. fwd_off[i+1]), with kPlanGroup pixel values
// each in fx (0 for a sample that does not use the input, or is missing). The
// inputs are sorted by which members use them (the bit mask of the members, 1 to
// 15), then increasing: the run of mask m starts at fwd_off[i] +
// fpat[i * 16 + m] (fpat[i * 16] = 0), and the last run ends at fwd_off[i + 1].
// Dot products (per block, at gram + b * gram_per_block): for each batch j =
// 1..kb-1 of the block, a (batch, j * batch) table at batch^2 * j * (j-1) / 2:
// entry (r, s) is sum_k p_rk * p_sk over the raw pixel values (0..255) of its
// sample r and the block's earlier sample s (exact in uint32 up to 66051 inputs: 255^2 * 66051 < 2^32).
constexpr int kPlanGroup = 4;
constexpr int64_t kPlanSpan = 64;  // samples per block; ent and fperm hold a sample in 8 bits
struct BatchPlan {
    int64_t batch, n;
    int64_t kb, span, nblocks;
    const int64_t* row_off;
    const int64_t* ent_off;
    const uint16_t* rows;
    const uint16_t* ent;
    const int32_t* ngroup;
    int64_t gpb;
    const int64_t* fwd_off;
    const uint16_t* fk;
    const uint8_t* fx;
    const uint8_t* fperm;
    const int32_t* fpat;
    const uint32_t* gram;
    int64_t gram_per_block;
};

// The hidden layers' activation. The table of their forward functions and
// derivatives is kernels/activations.inc; the derivative is written in terms of
// the activation's output, as scikit-learn's DERIVATIVES are.
enum class Activation : int { relu = 0, tanh = 1, logistic = 2, identity = 3 };

// The update stage's rules (kernels/update.inc): torch.optim's SGD (momentum,
// dampening, Nesterov, weight decay), Adam (AdamW: decoupled decay; AMSGrad) and
// RMSprop (momentum, centered), and scikit-learn's SGD and Adam (whose momentum
// and epsilon sit elsewhere in the formulas) for MLPClassifier.
enum class OptKind : int { sgd = 0, adam = 1, rmsprop = 2, sgd_sklearn = 3, adam_sklearn = 4 };
constexpr int kStateSlots = 3;  // per-parameter state arrays, at most (Adam with AMSGrad, centered RMSprop with momentum)
struct OptConfig {
    OptKind kind = OptKind::sgd;
    double lr = 0.1;
    double momentum = 0, dampening = 0;
    bool nesterov = false;
    double weight_decay = 0;       // torch: g += wd p (Adam, SGD, RMSprop); AdamW: p *= 1 - lr wd
    bool decoupled = false;        // AdamW
    bool decay_biases = true;      // torch decays every parameter; scikit-learn's alpha only the weights
    bool decay_over_rows = false;  // scikit-learn: the L2 term's gradient is alpha W / batch rows
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    bool amsgrad = false;
    double alpha = 0.99;  // RMSprop's smoothing constant
    bool centered = false;
    int64_t step0 = 0;  // steps taken before this epoch with this state (the first step is step0 + 1)
};
// Plain SGD, p -= lr g: no state, and a gradient that is zero where the batch
// has no input leaves those weights alone (what the fused variants rely on).
inline bool plain_sgd(const OptConfig& o) {
    return (o.kind == OptKind::sgd || o.kind == OptKind::sgd_sklearn) && o.momentum == 0 && o.weight_decay == 0;
}

// The one rule for the panel variant (engine/train_panels.inc), shared by the
// engine's kernel choice (engine_choice) and by what fit prepares for it (a
// BatchPlan, for plain SGD without dropout): small batches, whatever the update
// rule (kernels/update.inc), the activation (ACTIVATIONS) and dropout. Its panels hold the first hidden
// layer and the next layer's rows for its units; every thread runs the layers
// after those two alike, so they must be small next to them: at most a quarter
// of the second layer's weights. Any depth from one hidden layer on. Batches of
// 65 to 256 too when the layers after the first have at most a quarter of its
// weights and the input is uint8 pixels read over their nonzeros, `pixels`
// (784-300-10 at batch 128 and 256 measured 0.19 and 0.17 s an epoch
// against 0.30 and 0.27 s in the layers' stages; 784-512-512-10 at 256, whose
// second layer is the bigger, 0.92 against 0.84 s), and while the batch's
// per-thread lists stay small (B x D up to 2^20).
inline bool panel_first_layer(int nlayers, const int64_t* sizes, int64_t batch, bool pixels) {
    if (nlayers < 2 || batch > kPanelMaxBatch) return false;
    if (batch > kFastMaxBatch) {
        // Only over pixels' nonzeros: dense features would read W0 once per sample.
        if (!pixels || batch * sizes[0] > (int64_t)1 << 20) return false;  // its per-thread lists take ~16 B x D bytes
        int64_t after = 0;
        for (int l = 1; l < nlayers; ++l) after += sizes[l] * sizes[l + 1];
        if (4 * after > sizes[0] * sizes[1]) return false;
    }
    // Tests run the layers' stages instead, to compare the two: MNIST_MLP_TEST_LAYERS=1.
    const char* layers_env = std::getenv("MNIST_MLP_TEST_LAYERS");
    if (layers_env && layers_env[0] == '1') return false;
    int64_t tail = 0;
    for (int l = 2; l < nlayers; ++l) tail += sizes[l] * sizes[l + 1];
    return 4 * tail <= sizes[1] * sizes[2];
}
// Whether the panel variant reads a BatchPlan over the pixels: plain SGD without
// dropout (`plain`), batches in order, a batch a plan holds. The one rule for
// what fit prepares (training_aid) and what the engine reads (engine_choice).
inline bool plan_applies(int nlayers, const int64_t* sizes, int64_t batch, bool plain, bool in_order) {
    return plain && in_order && batch <= kFastMaxBatch && panel_first_layer(nlayers, sizes, batch, true);
}

// A network as plain pointers into the model's single parameter allocation.
// w[l] is (sizes[l], sizes[l+1]) row-major, b[l] is (sizes[l+1],).
template <class T>
struct NetView {
    int nlayers;           // number of weight matrices
    const int64_t* sizes;  // nlayers + 1 entries
    T* const* w;
    T* const* b;
    Activation act = Activation::relu;  // of every hidden layer; the output layer is softmax
};

// What one call of train_epoch does and reports.
template <class T>
struct TrainJob {
    NetView<T> net;
    InputView x;
    const int32_t* y;       // class ids, validated < sizes[nlayers]
    const int64_t* order;   // permutation of [0, n) or nullptr for 0..n-1
    int64_t n;
    int64_t batch;
    T lr;                   // opt.lr in T, for the fused variant
    bool sparse;            // skip zero inputs (same sums, fewer terms)
    bool stop_on_nonfinite; // end the epoch after the first batch whose loss is NaN/Inf
    // Called between batches about every millisecond with the batches done so far
    // (signal checks, progress); nonzero stops the epoch.
    int (*should_stop)(void* ctx, int64_t batches_done);
    void* stop_ctx;
    int nthreads = 1;
    const NonzeroIndex* nz = nullptr;  // optional index of job.x (uint8)
    const BatchPlan* plan = nullptr;   // optional, built from x for this batch; only when order is nullptr
    OptConfig opt;                     // the update stage (opt.lr == lr)
    // The optimizer's state: slot s of W_l at state_w[s * nlayers + l], same
    // shape as W_l, and of b_l at state_b[...]; null when the rule has none.
    T* const* state_w = nullptr;
    T* const* state_b = nullptr;
    // Inverted dropout after each hidden layer's activation: rate dropout[h - 1]
    // for hidden layer h (nullptr: none), masks keyed by (seed, epoch, sample, unit).
    const double* dropout = nullptr;
    uint64_t dropout_seed = 0;
    int64_t epoch = 0;
    bool sklearn_loss = false;  // loss_sum as scikit-learn's log_loss (probabilities clipped at eps)
    // results
    int64_t batches_done = 0;
    int64_t samples_done = 0;
    double loss_sum = 0;       // sum over samples of the pre-update batch loss
    int64_t first_nonfinite_batch = -1;
    bool stopped = false;
    int64_t correct = 0;       // samples whose pre-update prediction was right (the running accuracy)
    // With opt.decay_over_rows (scikit-learn's alpha): the sum over steps of the
    // L2 term of its loss, alpha / 2 * sum ||W_l||^2, with the weights the step's
    // forward used.
    double penalty_sum = 0;
    const char* kernel = "";   // which variant of the engine ran (engine_choice), for tests and benchmarks
};

// Forward pass over many rows: probabilities and/or loss and accuracy.
template <class T>
struct EvalJob {
    NetView<T> net;
    InputView x;
    const int32_t* y;   // nullptr when only probabilities are wanted
    T* probs;           // (n, classes) or nullptr
    int64_t n;
    int nthreads;
    double loss_sum = 0;
    int64_t correct = 0;
    int32_t* pred = nullptr;  // (n,) argmax, or nullptr
    const BatchPlan* plan = nullptr;  // optional, built from x: its forward groups serve the first layer
};

template <class T>
struct GemmJob {
    // C (m x n) = op(A) (m x k) . op(B) (k x n), row-major with leading dimensions;
    // with accumulate, C := C + alpha op(A) op(B) (the engine's SGD step in the
    // weight gradient's product: W := W - lr a^T dZ, no gradient stored).
    int64_t m, n, k;
    const T* a; int64_t lda; bool trans_a;
    const T* b; int64_t ldb; bool trans_b;
    T* c; int64_t ldc;
    int nthreads;
    bool accumulate = false;
    T alpha = T(1);  // read only with accumulate
};

template <class T>
struct Kernels {
    const char* isa;
    void (*gemm)(const GemmJob<T>&);
    void (*gemm_naive)(const GemmJob<T>&);
    void (*train_epoch)(TrainJob<T>&);
    void (*evaluate)(EvalJob<T>&);
    void (*relu)(T* out, const T* in, int64_t n);
    // Row-wise softmax of z (rows x cols), and optionally the mean cross-entropy
    // against labels and its gradient (p - onehot) / rows.
    double (*softmax_xent)(T* probs, T* dlogits, const T* z, const int32_t* y, int64_t rows, int64_t cols);
};

// The data caches of this CPU in bytes, detected once at run time
// (/sys/devices/system/cpu/cpu0/cache, then sysconf), with conservative defaults where
// neither tells (32 KiB, 512 KiB, 8 MiB). l3 is the whole shared cache.
struct CacheSizes {
    int64_t l1, l2, l3;
};
const CacheSizes& cache_sizes();

// Returns the kernels for the best ISA this CPU supports, or the one named
// ("generic", "avx2", "avx512"); nullptr when that ISA is unavailable.
template <class T>
const Kernels<T>* get_kernels(const char* isa = nullptr);
const char* best_isa();
// Force an ISA for all later calls (tests use it to exercise every path); "" resets.
bool set_isa(const char* isa);
const char* current_isa();

#define MM_DECLARE_ISA(ns)                       \
    namespace ns {                               \
    extern const Kernels<float> kernels_f32;     \
    extern const Kernels<double> kernels_f64;    \
    }
MM_DECLARE_ISA(generic)
MM_DECLARE_ISA(avx2)
MM_DECLARE_ISA(avx512)
#undef MM_DECLARE_ISA

}  // namespace mm
