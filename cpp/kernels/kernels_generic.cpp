// The hot kernels compiled for the generic instruction set (see kernels_impl.hpp).
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
namespace generic {
#define MM_VBYTES 16
#include "kernels/kernels_impl.hpp"

const Kernels<float> kernels_f32 = make_kernels<float>("generic");
const Kernels<double> kernels_f64 = make_kernels<double>("generic");
}  // namespace generic
}  // namespace mm
