/* gx_math.h: the device numerics of gxnpuc in C99 (header only, freestanding, no libm).
 *
 * One definition, two implementations: gxnpuc/devmath.py computes the same functions in numpy
 * float32 with the same operations in the same order, and tests/test_devmath.py checks that
 * both give the same bits (every fp16 input of each unary function, plus random fp32 inputs).
 * docs/numerics.md states the algorithms and their measured accuracy.
 *
 * Build with -ffp-contract=off (no fused multiply-add) on a target where FLT_EVAL_METHOD == 0
 * (x86-64 SSE, Cortex-M4F): then every + - * / below is one correctly rounded binary32
 * operation, as in numpy.
 *
 * API (all static inline; names are stable):
 *   float    gx_f16_to_f32(uint16_t h)         fp16 bits -> float (exact)
 *   uint16_t gx_f32_to_f16(float x)            float -> fp16 bits, round to nearest even,
 *                                              overflow to +-inf, every NaN -> 0x7E00
 *   float gx_sqrtf(float x)                    correctly rounded (FPU instruction or exact routine)
 *   float gx_rsqrtf(float x)                   1 / sqrt(x)
 *   float gx_expf(float x), gx_expm1f(float x), gx_logf(float x), gx_log1pf(float x)
 *   float gx_tanhf(float x), gx_sigmoidf(float x), gx_erff(float x), gx_erfcf(float x)
 *   float gx_powf(float x, float e)
 *   float gx_geluf(float x)                    x/2 * erfc(-x/sqrt(2))       (exact GELU)
 *   float gx_gelu_tanhf(float x)               x / (1 + exp(-2v)), v = sqrt(2/pi)(x + 0.044715 x^3)
 *   float gx_siluf(float x, float alpha)       x / (1 + exp(-(alpha x)))
 *   float gx_softplusf(float x), gx_softsignf(float x), gx_mishf(float x)
 *   float gx_eluf(float x, float alpha), gx_seluf(float x, float alpha, float gamma)
 *   float gx_hard_sigmoidf(float x, float alpha, float beta), gx_hard_swishf(float x)
 */
#ifndef GX_MATH_H
#define GX_MATH_H

#include <float.h>
#include <stdint.h>

#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "gx_math.h needs FLT_EVAL_METHOD == 0 (float arithmetic in float, e.g. SSE or an FPv4 FPU)"
#endif

typedef union { float f; uint32_t u; } gx__bits;

static inline uint32_t gx__f2u(float x) { gx__bits b; b.f = x; return b.u; }
static inline float gx__u2f(uint32_t u) { gx__bits b; b.u = u; return b.f; }

#define GX__NAN gx__u2f(0x7FC00000u)
#define GX__INF gx__u2f(0x7F800000u)

/* ---- fp16 storage ------------------------------------------------------------------------ */
static inline float gx_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu) return gx__u2f(sign | 0x7F800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return gx__u2f(sign);
        e = 113; /* subnormal, value m * 2^-24: normalise */
        while (!(m & 0x400u)) { m <<= 1; e--; }
        return gx__u2f(sign | (e << 23) | ((m & 0x3FFu) << 13));
    }
    return gx__u2f(sign | ((e + 112) << 23) | (m << 13));
}

static inline uint16_t gx_f32_to_f16(float x) {
    uint32_t b = gx__f2u(x), sign = (b >> 16) & 0x8000u, mag = b & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return 0x7E00u;                       /* NaN: one canonical NaN */
    if (mag >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);   /* rounds beyond 65504: inf */
    if (mag < 0x38800000u) {                                     /* below 2^-14: subnormal fp16 */
        uint32_t e = mag >> 23, m, shift, q, rest, half;
        if (e < 102) return (uint16_t)sign;                      /* below 2^-25: rounds to 0 */
        m = (mag & 0x7FFFFFu) | 0x800000u;
        shift = 126 - e;                                         /* value = m * 2^(e-150) */
        q = m >> shift;
        rest = m & ((1u << shift) - 1u);
        half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    {   /* normal: round the significand to 11 bits, a carry moves into the exponent */
        uint32_t r = mag + 0xFFFu + ((mag >> 13) & 1u);
        return (uint16_t)(sign | ((r >> 13) - (112u << 10)));
    }
}

/* ---- sqrt -------------------------------------------------------------------------------- */
/* Correctly rounded square root by integer arithmetic (used where no FPU instruction is known). */
static inline float gx__sqrtf_exact(float x) {
    uint32_t b = gx__f2u(x), m, keep, rnd;
    int32_t e;
    uint64_t v, q = 0, bit, r;
    if (x != x || x < 0.0f) return GX__NAN;
    if (x == 0.0f || b == 0x7F800000u) return x;
    e = (int32_t)(b >> 23);
    m = b & 0x7FFFFFu;
    if (e == 0) { e = 1; while (!(m & 0x800000u)) { m <<= 1; e--; } }
    else m |= 0x800000u;
    e -= 150;                              /* x = m * 2^e, m in [2^23, 2^24) */
    if (e & 1) { m <<= 1; e--; }           /* e even */
    v = (uint64_t)m << 26;                 /* sqrt(x) = sqrt(v) * 2^(e/2 - 13) */
    r = v;
    for (bit = (uint64_t)1 << 50; bit; bit >>= 2) {
        if (r >= q + bit) { r -= q + bit; q = (q >> 1) + bit; }
        else q >>= 1;
    }                                      /* q = floor(sqrt(v)) in [2^24.5, 2^25.5), r = rest */
    if (q >= ((uint64_t)1 << 25)) {
        keep = (uint32_t)(q >> 2); rnd = (uint32_t)(q >> 1) & 1u;
        if ((q & 1u) || r) rnd |= 2u;
        e = e / 2 - 13 + 2;
    } else {
        keep = (uint32_t)(q >> 1); rnd = (uint32_t)q & 1u;
        if (r) rnd |= 2u;
        e = e / 2 - 13 + 1;
    }
    if ((rnd & 1u) && ((rnd & 2u) || (keep & 1u))) keep++;
    if (keep == (1u << 24)) { keep >>= 1; e++; }
    return gx__u2f((uint32_t)(e + 23 + 127) << 23 | (keep & 0x7FFFFFu));
}

static inline float gx_sqrtf(float x) {
#if defined(__GNUC__) && defined(__SSE_MATH__) && !defined(GX_MATH_SOFT_SQRT)
    float r;
    __asm__("sqrtss %1, %0" : "=x"(r) : "x"(x));
    return r;
#elif defined(__GNUC__) && defined(__ARM_FP) && (__ARM_FP & 4) && !defined(GX_MATH_SOFT_SQRT)
    float r;
    __asm__("vsqrt.f32 %0, %1" : "=t"(r) : "t"(x));
    return r;
#else
    return gx__sqrtf_exact(x);
#endif
}

static inline float gx_rsqrtf(float x) { return 1.0f / gx_sqrtf(x); }

/* ---- exp, expm1 --------------------------------------------------------------------------- */
/* x = n ln2 + r, n = x log2(e) rounded to nearest even (by adding and subtracting 1.5*2^23),
 * r = (x - n ln2_hi) - n ln2_lo with ln2_hi exact in 15 bits; exp(r) = 1 + (r + r^2 P(r)),
 * P a degree-4 least-squares fit of (e^r - 1 - r)/r^2 on [-ln2/2, ln2/2], Horner's rule. */
#define GX__LOG2E 0x1.715476p+0f
#define GX__LN2_HI 0x1.62e4p-1f
#define GX__LN2_LO 0x1.7f7d1cp-20f
#define GX__ROUND 0x1.8p+23f

static inline float gx__pow2i(int32_t k) { return gx__u2f((uint32_t)(k + 127) << 23); }

static inline float gx__exp_p(float r) {
    float p = 0x1.6c37ecp-10f;
    p = p * r + 0x1.120afcp-7f;
    p = p * r + 0x1.5555eap-5f;
    p = p * r + 0x1.5554dep-3f;
    p = p * r + 0x1.0p-1f;
    return p;
}

static inline float gx_expf(float x) {
    float n, r, y;
    int32_t k, k1;
    if (x != x) return x;
    if (x > 89.0f) x = 89.0f;       /* the result overflows to +inf */
    if (x < -110.0f) x = -110.0f;   /* the result underflows to +0 */
    n = (x * GX__LOG2E + GX__ROUND) - GX__ROUND;
    r = (x - n * GX__LN2_HI) - n * GX__LN2_LO;
    y = 1.0f + (r + (r * r) * gx__exp_p(r));
    k = (int32_t)n;
    k1 = (int32_t)(n * 0.5f);       /* two exact scalings keep 2^k1, 2^(k-k1) normal */
    return (y * gx__pow2i(k1)) * gx__pow2i(k - k1);
}

/* expm1: x > 16: exp(x) - 1; x < -17.5: -1; else with n, r as in exp:
 * em = r + r^2 P(r); n == 0: em, else 2^n em + (2^n - 1). */
static inline float gx_expm1f(float x) {
    float n, r, em, s;
    if (x != x) return x;
    if (x > 16.0f) return gx_expf(x) - 1.0f;
    if (x < -17.5f) return -1.0f;
    n = (x * GX__LOG2E + GX__ROUND) - GX__ROUND;
    r = (x - n * GX__LN2_HI) - n * GX__LN2_LO;
    em = r + (r * r) * gx__exp_p(r);
    if (n == 0.0f) return em;
    s = gx__pow2i((int32_t)n);
    return s * em + (s - 1.0f);
}

/* ---- log, log1p --------------------------------------------------------------------------- */
/* x = 2^e m, m in [sqrt(1/2), sqrt(2)) (subnormals scaled by 2^23 first); f = m - 1,
 * s = f / (2 + f), z = s^2, R = z Q(z), Q a degree-3 fit of (2 atanh(s)/s - 2)/z;
 * log x = e ln2_hi + (f - (f^2/2 - (s (f^2/2 + R) + e ln2_lo))). */
static inline float gx_logf(float x) {
    uint32_t b;
    int32_t e = 0;
    float f, s, z, R, hfsq, dk;
    if (x != x) return x;
    if (x < 0.0f) return GX__NAN;
    if (x == 0.0f) return -GX__INF;
    if (x == GX__INF) return x;
    if (x < 0x1p-126f) { x = x * 0x1p23f; e = -23; }
    b = gx__f2u(x);
    e += (int32_t)(b >> 23) - 127;
    b &= 0x7FFFFFu;
    if (b > 0x3504F3u) { b |= 0x3F000000u; e += 1; }
    else b |= 0x3F800000u;
    f = gx__u2f(b) - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
    R = 0x1.ddcce2p-3f;
    R = R * z + 0x1.245c4ep-2f;
    R = R * z + 0x1.9999ecp-2f;
    R = R * z + 0x1.555556p-1f;
    R = z * R;
    hfsq = (0.5f * f) * f;
    dk = (float)e;
    return dk * GX__LN2_HI + (f - (hfsq - (s * (hfsq + R) + dk * GX__LN2_LO)));
}

/* log1p(y) = log(u) * (y / (u - 1)), u = 1 + y (y itself when u == 1; u when u is inf) */
static inline float gx_log1pf(float y) {
    float u = 1.0f + y;
    if (u == 1.0f) return y;
    if (u == GX__INF) return u;
    return gx_logf(u) * (y / (u - 1.0f));
}

/* ---- composites ----------------------------------------------------------------------------- */
static inline float gx__copysign(float mag, float sign_of) {
    return gx__u2f((gx__f2u(mag) & 0x7FFFFFFFu) | (gx__f2u(sign_of) & 0x80000000u));
}

/* tanh: a = |x|; a > 9: 1, else t = expm1(2a), t / (t + 2); the sign of x put back */
static inline float gx_tanhf(float x) {
    float a, t, y;
    if (x != x) return x;
    a = gx__u2f(gx__f2u(x) & 0x7FFFFFFFu);
    if (a > 9.0f) y = 1.0f;
    else { t = gx_expm1f(2.0f * a); y = t / (t + 2.0f); }
    return gx__copysign(y, x);
}

static inline float gx_sigmoidf(float x) { return 1.0f / (1.0f + gx_expf(-x)); }

/* erf, erfc. |x| < 0.84375: erf(x) = x + x q(x^2), q a degree-6 fit of erf(x)/x - 1.
 * a >= 0.84375: erfc(a) = exp(-ah*ah) * exp(-(a - ah)(a + ah)) * F(t), ah = a with the low
 * 12 significand bits cleared (ah*ah exact), t = 1/(1 + a/2), F a degree-10 fit of
 * erfc(a) e^(a^2) in t; erfc(a) = 0 from a >= 10.1. */
static inline float gx__erf_small(float x) {
    float z = x * x, q = 0x1.75047cp-14f;
    q = q * z - 0x1.b0d948p-11f;
    q = q * z + 0x1.55746ap-8f;
    q = q * z - 0x1.b81eb8p-6f;
    q = q * z + 0x1.ce2eb8p-4f;
    q = q * z - 0x1.812746p-2f;
    q = q * z + 0x1.06eba8p-3f;
    return x + x * q;
}

static inline float gx__erfc_big(float a) {
    float t, F, ah;
    if (a >= 10.1f) return 0.0f;
    t = 1.0f / (1.0f + 0.5f * a);
    F = -0x1.43d368p-5f;
    F = F * t + 0x1.89a4cep-4f;
    F = F * t + 0x1.cd48eap-6f;
    F = F * t - 0x1.079f6ap-2f;
    F = F * t + 0x1.4674fcp-3f;
    F = F * t + 0x1.bd4844p-8f;
    F = F * t + 0x1.986712p-3f;
    F = F * t + 0x1.f0431ep-3f;
    F = F * t + 0x1.216fa6p-2f;
    F = F * t + 0x1.20d31ap-2f;
    F = F * t + 0x1.4881e6p-20f;
    ah = gx__u2f(gx__f2u(a) & 0xFFFFF000u);
    return (gx_expf(-(ah * ah)) * gx_expf(-((a - ah) * (a + ah)))) * F;
}

static inline float gx_erff(float x) {
    float a;
    if (x != x) return x;
    a = gx__u2f(gx__f2u(x) & 0x7FFFFFFFu);
    if (a < 0.84375f) return gx__erf_small(x);
    if (a >= 4.0f) return gx__copysign(1.0f, x);
    return gx__copysign(1.0f - gx__erfc_big(a), x);
}

static inline float gx_erfcf(float x) {
    if (x != x) return x;
    if (x > -0.84375f && x < 0.84375f) return 1.0f - gx__erf_small(x);
    if (x > 0.0f) return gx__erfc_big(x);
    return 2.0f - gx__erfc_big(-x);
}

#define GX__SQRT1_2 0x1.6a09e6p-1f
#define GX__SQRT2_PI 0x1.988454p-1f

static inline float gx_geluf(float x) { return (0.5f * x) * gx_erfcf(-(x * GX__SQRT1_2)); }

static inline float gx_gelu_tanhf(float x) {
    float v = GX__SQRT2_PI * (x + 0x1.6e4e26p-5f * ((x * x) * x));
    return x / (1.0f + gx_expf(-2.0f * v));
}

static inline float gx_siluf(float x, float alpha) { return x / (1.0f + gx_expf(-(alpha * x))); }

/* softplus = log(1 + e^x): x > 0: x + log1p(e^-x), else log1p(e^x) */
static inline float gx_softplusf(float x) {
    if (x > 0.0f) return x + gx_log1pf(gx_expf(-x));
    return gx_log1pf(gx_expf(x));
}

static inline float gx_softsignf(float x) {
    return x / (1.0f + gx__u2f(gx__f2u(x) & 0x7FFFFFFFu));
}

static inline float gx_mishf(float x) { return x * gx_tanhf(gx_softplusf(x)); }

static inline float gx_eluf(float x, float alpha) { return x > 0.0f ? x : alpha * gx_expm1f(x); }

static inline float gx_seluf(float x, float alpha, float gamma) {
    return gamma * (x > 0.0f ? x : alpha * gx_expm1f(x));
}

static inline float gx__clip01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

static inline float gx_hard_sigmoidf(float x, float alpha, float beta) {
    return gx__clip01(x * alpha + beta);
}

static inline float gx_hard_swishf(float x) { return x * gx__clip01(x / 6.0f + 0.5f); }

/* ---- pow ------------------------------------------------------------------------------------ */
/* e == 0: 1; e == 0.5: sqrt(x); e an integer with |e| <= 64: square and multiply from the
 * lowest bit (r = 1, b = x; per bit: r = r*b if set, then b = b*b while bits remain),
 * 1/r for e < 0; otherwise x < 0: NaN (or the sign of an odd integer e), exp(e * log|x|). */
static inline float gx_powf(float x, float e) {
    float ae = gx__u2f(gx__f2u(e) & 0x7FFFFFFFu), r, b, y;
    int32_t k;
    if (e == 0.0f) return 1.0f;
    if (e == 0.5f) return gx_sqrtf(x);
    if (x != x || e != e) return GX__NAN;
    if (ae <= 64.0f && (float)(int32_t)ae == ae) {
        r = 1.0f; b = x; k = (int32_t)ae;
        while (k) {
            if (k & 1) r = r * b;
            k >>= 1;
            if (k) b = b * b;
        }
        return e < 0.0f ? 1.0f / r : r;
    }
    y = gx_expf(e * gx_logf(gx__u2f(gx__f2u(x) & 0x7FFFFFFFu)));
    if (x < 0.0f) {
        if (ae >= 0x1p24f) return y;                      /* even integer */
        if ((float)(int32_t)ae != ae) return GX__NAN;     /* not an integer */
        if ((int32_t)ae & 1) return -y;
    }
    return y;
}

#endif /* GX_MATH_H */
