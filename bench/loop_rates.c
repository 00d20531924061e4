/* Multiply-add rates of the loop shapes the training epoch is made of, on one
 * core, outside the package: the numbers behind "The measured limit" in
 * bench/RESULTS.md.
 *
 *     gcc -O3 -mavx512f bench/loop_rates.c -o /tmp/loop_rates && /tmp/loop_rates
 *
 * (AVX-512 only; run it on an idle core.) Each line prints billions of 16-float
 * multiply-adds per second:
 *   registers   12 independent accumulators, operands in registers: the peak;
 *   update      the block update's inner loop: per entry one 16-bit word (sample,
 *               pixel value), a scalar from a 256-entry table, and 10 multiply-adds
 *               with rows of a 64 x 160 float table (40 KB, in L1) picked at random;
 *   update/4    the same with the rows drawn from 4 only (all in L1 for certain).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NV 10
#define ENTRIES (1 << 16)

static float dh[64 * 160] __attribute__((aligned(64)));
static float lut[256];
static uint16_t ent[ENTRIES];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void registers(void) {
    const long n = 100000000;
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
    const double t0 = now();
    for (long i = 0; i < n; i++)
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    const double t = now() - t0;
    float s = 0;
    for (int j = 0; j < 12; j++) s += _mm512_reduce_add_ps(acc[j]);
    printf("registers  %.2f G multiply-adds/s (checksum %g)\n", n * 12 / t / 1e9, s);
}

static void update(int rows, const char* name) {
    for (int i = 0; i < ENTRIES; i++) ent[i] = (uint16_t)(((rand() % rows) << 8) | (rand() & 255));
    const long reps = 1000;
    __m512 acc[NV];
    for (int v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();
    const double t0 = now();
    for (long r = 0; r < reps; r++)
        for (int t = 0; t < ENTRIES; t++) {
            const uint16_t e = ent[t];
            const __m512 x = _mm512_set1_ps(lut[e & 255]);
            const float* d = dh + (e >> 8) * 160;
#pragma GCC unroll 16
            for (int v = 0; v < NV; v++) acc[v] = _mm512_fmadd_ps(x, _mm512_load_ps(d + 16 * v), acc[v]);
        }
    const double t = now() - t0;
    float s = 0;
    for (int v = 0; v < NV; v++) s += _mm512_reduce_add_ps(acc[v]);
    printf("%-10s %.2f G multiply-adds/s (checksum %g)\n", name, reps * (double)ENTRIES * NV / t / 1e9, s);
}

int main(void) {
    for (int i = 0; i < 64 * 160; i++) dh[i] = i * 1e-6f;
    for (int i = 0; i < 256; i++) lut[i] = i / 255.f;
    registers();
    update(64, "update");
    update(4, "update/4");
    return 0;
}
