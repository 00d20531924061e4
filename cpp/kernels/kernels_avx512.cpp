// The hot kernels compiled for the avx512 instruction set (see kernels_impl.hpp).
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/kernels.hpp"

namespace mm {
namespace avx512 {
#define MM_VBYTES 64
#include "kernels/kernels_impl.hpp"

const Kernels<float> kernels_f32 = make_kernels<float>("avx512");
const Kernels<double> kernels_f64 = make_kernels<double>("avx512");
}  // namespace avx512
}  // namespace mm
