/* 3-tap, stride-1, zero-padded grouped 1-D convolutions on the engine's tall layout (1, G*C, B, L):
 * forward (also used for the input gradient, with transposed and flipped weights) and weight
 * gradient. oneDNN, under torch's conv2d, spends about half of such a call reordering activations
 * into and out of its blocked layout (docs/performance.md); these loops read the plain layout.
 *
 * Each group's channel rows are P = B*L floats; position p belongs to row p / L, and a tap that
 * would cross a row edge reads 0 (a masked load, or a select), never the neighbouring sample's value,
 * so samples stay independent even where one holds an inf or a NaN. With AVX-512 the loops run over strips of 16 positions with every output
 * channel's strip (forward) or eight channels' tap sums (weight gradient) in registers; without it,
 * plain loops that the compiler vectorises. Built and called by danas_bench/native.py. */
#include <stdlib.h>

static float *row_masks(long P, long L) {
    float *ml = malloc(2 * P * sizeof(float));
    if (!ml) return NULL;
    for (long p = 0; p < P; p++) {
        long l = p % L;
        ml[p] = l != 0;        /* the left tap stays in the row */
        ml[P + p] = l != L - 1; /* the right tap stays in the row */
    }
    return ml;
}

#ifdef __AVX512F__
#include <immintrin.h>

/* the lanes of the strip p0 .. p0+15 that lie before P */
static inline __mmask16 strip(long P, long p0) {
    long n = P - p0 < 16 ? P - p0 : 16;
    return (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
}

/* the three taps of row xi at positions p0 .. p0+15: masked loads (no access past either end) */
static inline void taps(const float *xi, const float *ml, const float *mr, long P, long p0,
                        __m512 *x0, __m512 *x1, __m512 *x2) {
    __mmask16 k = strip(P, p0);
    __mmask16 k0 = p0 == 0 ? (__mmask16)(k & ~1u) : k;            /* lane 0 of the first strip: p - 1 < 0 */
    __mmask16 k2 = p0 + 16 >= P ? (__mmask16)(k >> 1) : k;       /* the last position: p + 1 == P */
    /* the row masks become load masks: a tap across a row edge is never loaded (0, not 0 * x) */
    __m512 zero = _mm512_setzero_ps();
    k0 &= _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, ml + p0), zero, _CMP_NEQ_OQ);
    k2 &= _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, mr + p0), zero, _CMP_NEQ_OQ);
    *x1 = _mm512_maskz_loadu_ps(k, xi + p0);
    *x0 = _mm512_maskz_loadu_ps(k0, xi + p0 - 1);
    *x2 = _mm512_maskz_loadu_ps(k2, xi + p0 + 1);
}

#define FORWARD_GROUP(OUT)                                                                                \
    static void forward_group_##OUT(const float *x, const float *w, const float *bias, float *y, long in, \
                                    long P, const float *ml, const float *mr) {                           \
        for (long p0 = 0; p0 < P; p0 += 16) {                                                             \
            __m512 acc[OUT];                                                                              \
            for (int o = 0; o < OUT; o++) acc[o] = _mm512_set1_ps(bias ? bias[o] : 0.0f);                 \
            for (long i = 0; i < in; i++) {                                                               \
                __m512 x0, x1, x2;                                                                        \
                taps(x + i * P, ml, mr, P, p0, &x0, &x1, &x2);                                            \
                for (int o = 0; o < OUT; o++) {                                                           \
                    const float *wt = w + (o * in + i) * 3;                                               \
                    acc[o] = _mm512_fmadd_ps(_mm512_set1_ps(wt[0]), x0, acc[o]);                          \
                    acc[o] = _mm512_fmadd_ps(_mm512_set1_ps(wt[1]), x1, acc[o]);                          \
                    acc[o] = _mm512_fmadd_ps(_mm512_set1_ps(wt[2]), x2, acc[o]);                          \
                }                                                                                         \
            }                                                                                             \
            __mmask16 k = strip(P, p0);                                                                   \
            for (int o = 0; o < OUT; o++) _mm512_mask_storeu_ps(y + o * P + p0, k, acc[o]);               \
        }                                                                                                 \
    }
FORWARD_GROUP(1)
FORWARD_GROUP(4)
FORWARD_GROUP(8)
FORWARD_GROUP(16)

static void forward_group(const float *x, const float *w, const float *bias, float *y, long in, long out,
                          long P, const float *ml, const float *mr) {
    long o = 0;
    for (; o + 16 <= out; o += 16) forward_group_16(x, w + o * in * 3, bias ? bias + o : NULL, y + o * P, in, P, ml, mr);
    for (; o + 8 <= out; o += 8) forward_group_8(x, w + o * in * 3, bias ? bias + o : NULL, y + o * P, in, P, ml, mr);
    for (; o + 4 <= out; o += 4) forward_group_4(x, w + o * in * 3, bias ? bias + o : NULL, y + o * P, in, P, ml, mr);
    for (; o < out; o++) forward_group_1(x, w + o * in * 3, bias ? bias + o : NULL, y + o * P, in, P, ml, mr);
}

/* gw[o][i][t] for up to 8 output channels o0.. and one input channel i */
static void weight_grad_block(const float *gyo, const float *xi, float *gw, long in, int ob, long P,
                              const float *ml, const float *mr) {
    __m512 acc[8][3];
    for (int o = 0; o < 8; o++)
        for (int t = 0; t < 3; t++) acc[o][t] = _mm512_setzero_ps();
    for (long p0 = 0; p0 < P; p0 += 16) {
        __m512 x0, x1, x2;
        taps(xi, ml, mr, P, p0, &x0, &x1, &x2);
        __mmask16 k = strip(P, p0);
        for (int o = 0; o < ob; o++) {
            __m512 g = _mm512_maskz_loadu_ps(k, gyo + o * P + p0);
            acc[o][0] = _mm512_fmadd_ps(g, x0, acc[o][0]);
            acc[o][1] = _mm512_fmadd_ps(g, x1, acc[o][1]);
            acc[o][2] = _mm512_fmadd_ps(g, x2, acc[o][2]);
        }
    }
    for (int o = 0; o < ob; o++)
        for (int t = 0; t < 3; t++) gw[o * in * 3 + t] = _mm512_reduce_add_ps(acc[o][t]);
}

static void weight_grad_group(const float *gy, const float *x, float *gw, long in, long out, long P,
                              const float *ml, const float *mr) {
    for (long o0 = 0; o0 < out; o0 += 8) {
        int ob = out - o0 < 8 ? (int)(out - o0) : 8;
        for (long i = 0; i < in; i++)
            weight_grad_block(gy + o0 * P, x + i * P, gw + (o0 * in + i) * 3, in, ob, P, ml, mr);
    }
}

#else /* plain loops */

static void forward_group(const float *x, const float *w, const float *bias, float *y, long in, long out,
                          long P, const float *ml, const float *mr) {
    for (long o = 0; o < out; o++) {
        float *restrict yo = y + o * P;
        for (long p = 0; p < P; p++) yo[p] = bias ? bias[o] : 0.0f;
        for (long i = 0; i < in; i++) {
            const float *restrict xi = x + i * P;
            const float *wt = w + (o * in + i) * 3;
            float w0 = wt[0], w1 = wt[1], w2 = wt[2];
            if (P == 1) { yo[0] += w1 * xi[0]; continue; }
            yo[0] += w1 * xi[0] + w2 * (mr[0] != 0.0f ? xi[1] : 0.0f);
            for (long p = 1; p < P - 1; p++) yo[p] += w0 * (ml[p] != 0.0f ? xi[p - 1] : 0.0f) + w1 * xi[p] + w2 * (mr[p] != 0.0f ? xi[p + 1] : 0.0f);
            yo[P - 1] += w0 * (ml[P - 1] != 0.0f ? xi[P - 2] : 0.0f) + w1 * xi[P - 1];
        }
    }
}

static void weight_grad_group(const float *gy, const float *x, float *gw, long in, long out, long P,
                              const float *ml, const float *mr) {
    for (long o = 0; o < out; o++)
        for (long i = 0; i < in; i++) {
            const float *restrict g = gy + o * P, *restrict xi = x + i * P;
            float s0 = 0.0f, s1 = g[0] * xi[0], s2 = 0.0f;
            if (P > 1) {
                s2 = g[0] * (mr[0] != 0.0f ? xi[1] : 0.0f);
                s1 += g[P - 1] * xi[P - 1];
                s0 = g[P - 1] * (ml[P - 1] != 0.0f ? xi[P - 2] : 0.0f);
            }
            for (long p = 1; p < P - 1; p++) {
                s0 += g[p] * (ml[p] != 0.0f ? xi[p - 1] : 0.0f);
                s1 += g[p] * xi[p];
                s2 += g[p] * (mr[p] != 0.0f ? xi[p + 1] : 0.0f);
            }
            float *gt = gw + (o * in + i) * 3;
            gt[0] = s0, gt[1] = s1, gt[2] = s2;
        }
}
#endif

/* x: (G*in, P), w: (G*out, in, 3), bias: G*out or NULL, y: (G*out, P); nonzero on failure */
int conv3_forward(const float *x, const float *w, const float *bias, float *y,
                  long G, long in, long out, long B, long L) {
    long P = B * L;
    float *ml = row_masks(P, L);
    if (!ml) return 1;
    for (long g = 0; g < G; g++)
        forward_group(x + g * in * P, w + g * out * in * 3, bias ? bias + g * out : NULL, y + g * out * P,
                      in, out, P, ml, ml + P);
    free(ml);
    return 0;
}

/* gw[o][i][t] = sum_p gy[o][p] * tap_t(x[i])[p]; gy: (G*out, P), x: (G*in, P), gw: (G*out, in, 3) */
int conv3_weight_grad(const float *gy, const float *x, float *gw, long G, long in, long out, long B, long L) {
    long P = B * L;
    float *ml = row_masks(P, L);
    if (!ml) return 1;
    for (long g = 0; g < G; g++)
        weight_grad_group(gy + g * out * P, x + g * in * P, gw + g * out * in * 3, in, out, P, ml, ml + P);
    free(ml);
    return 0;
}
