/* Depthwise 3x3 inner kernels, NHWC, on GCC/Clang vector extensions.
 *
 * Used by _conv.pyx (forward, input gradient and weight gradient of the
 * depthwise convolution).  32-byte vectors: one AVX2 register in the
 * _conv_avx2/_conv_avx512 builds, two SSE2 registers in the baseline build.
 * Unaligned loads go through typedefs with a reduced alignment.  This file
 * includes itself twice to generate the float (_f) and double (_d) versions.
 *
 * Forward (effai_dw3_blk4): four adjacent output pixels of one row, every tap
 * inside the image.  For each vector of channels the nine weights are loaded
 * once into registers and the four accumulators stay in registers over the
 * nine taps; bias and activation are applied before the only store.  The
 * column offsets are passed so that the compiler sees the common geometries
 * (stride 1: six input columns per row shared by the four pixels; stride 2:
 * nine) and loads each input vector once.  Taps are summed in (kh, kw) order,
 * starting from tap 0, bias last (the order of the single-pixel path).
 *
 * Weight gradient (effai_dw3_gw): the nine tap sums and the bias sum of a
 * vector of channels stay in registers over a *tile* of DW3_GW_TILE output
 * pixels, then are added to the per-row sums.  Walking a whole row of a wide
 * layer per channel vector (stride C between pixels) touched 5 x OW cache
 * lines that all map to a few L1 sets, so each channel vector re-fetched the
 * row from L2/L3; a tile of 8 pixels keeps its ~50 lines in L1 for all the
 * channel vectors.  The order of the sums depends on the shape only.
 */
#ifndef EFFAI_DW_TEMPLATE
#ifndef EFFAI_NN_DW_H
#define EFFAI_NN_DW_H

#include <stddef.h>
#include <math.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  /* static functions: no ABI */
#endif

typedef float effai_dw_vf __attribute__((vector_size(32), aligned(4)));
typedef int effai_dw_vfi __attribute__((vector_size(32), aligned(4)));
typedef double effai_dw_vd __attribute__((vector_size(32), aligned(8)));
typedef long long effai_dw_vdi __attribute__((vector_size(32), aligned(8)));

#define DW3_GW_TILE 8

#define EFFAI_DW_TEMPLATE 1
#define T float
#define V effai_dw_vf
#define VI effai_dw_vfi
#define VL 8
#define F(name) name##_f
#include "_dw.h"
#undef T
#undef V
#undef VI
#undef VL
#undef F
#define T double
#define V effai_dw_vd
#define VI effai_dw_vdi
#define VL 4
#define F(name) name##_d
#include "_dw.h"
#undef T
#undef V
#undef VI
#undef VL
#undef F
#undef EFFAI_DW_TEMPLATE

#endif /* EFFAI_NN_DW_H */
#else  /* ---------------- templated part: T, V, VI, VL, F ---------------- */

#define LD(p) (*(const V*)(p))

static inline V F(effai_dw3_act)(V a, int act) {
    /* relu: 0 where a < 0 (NaN kept); relu6 also 6 where a > 6 */
    V zero = {0};
    VI neg, gt;
    if (act == 0) return a;
    neg = a < zero;
    a = (V)((VI)a & ~neg);
    if (act == 2) {
        V six = zero + (T)6;
        gt = a > six;
        a = (V)(((VI)a & ~gt) | ((VI)six & gt));
    }
    return a;
}

static inline T F(effai_dw3_act1)(T v, int act) {
    if (act == 0) return v;
    v = v < 0 ? (T)0 : v;
    if (act == 2) v = v > 6 ? (T)6 : v;
    return v;
}

/* Offsets of the input column of pixel j, tap kw: j*s1 + kw*d1 (elements). */
static inline __attribute__((always_inline)) void F(effai_dw3_blk4_core)(
        const T* r0, const T* r1, const T* r2, const T* w, ptrdiff_t ldw, const T* b,
        T* o, ptrdiff_t ldo, ptrdiff_t R, ptrdiff_t s1, ptrdiff_t d1, int act) {
    ptrdiff_t c = 0;
    /* Two vectors (one 64-byte line of every stream) per step, both halves of
       a line loaded back to back: with a pixel stride of 1-4 KiB all the
       streams fall in a few L1 sets, so a line would not survive until a
       second step came back for its other half. */
    for (; c + 2 * VL <= R; c += 2 * VL) {
        const T* q = w + c;
        const T* p;
        V a0, a1, a2, a3, e0, e1, e2, e3, wl, wh;
#define EFFAI_DW3_FWD2_TAP(ROW, T_, KW, OP) \
        wl = LD(q + T_ * ldw); wh = LD(q + T_ * ldw + VL); \
        p = ROW + c + KW * d1; \
        a0 OP LD(p) * wl; e0 OP LD(p + VL) * wh; \
        a1 OP LD(p + s1) * wl; e1 OP LD(p + s1 + VL) * wh; \
        a2 OP LD(p + 2 * s1) * wl; e2 OP LD(p + 2 * s1 + VL) * wh; \
        a3 OP LD(p + 3 * s1) * wl; e3 OP LD(p + 3 * s1 + VL) * wh;
        EFFAI_DW3_FWD2_TAP(r0, 0, 0, =)
        EFFAI_DW3_FWD2_TAP(r0, 1, 1, +=)
        EFFAI_DW3_FWD2_TAP(r0, 2, 2, +=)
        EFFAI_DW3_FWD2_TAP(r1, 3, 0, +=)
        EFFAI_DW3_FWD2_TAP(r1, 4, 1, +=)
        EFFAI_DW3_FWD2_TAP(r1, 5, 2, +=)
        EFFAI_DW3_FWD2_TAP(r2, 6, 0, +=)
        EFFAI_DW3_FWD2_TAP(r2, 7, 1, +=)
        EFFAI_DW3_FWD2_TAP(r2, 8, 2, +=)
#undef EFFAI_DW3_FWD2_TAP
        if (b) {
            wl = LD(b + c); wh = LD(b + c + VL);
            a0 += wl; a1 += wl; a2 += wl; a3 += wl;
            e0 += wh; e1 += wh; e2 += wh; e3 += wh;
        }
        *(V*)(o + c) = F(effai_dw3_act)(a0, act);
        *(V*)(o + c + VL) = F(effai_dw3_act)(e0, act);
        *(V*)(o + ldo + c) = F(effai_dw3_act)(a1, act);
        *(V*)(o + ldo + c + VL) = F(effai_dw3_act)(e1, act);
        *(V*)(o + 2 * ldo + c) = F(effai_dw3_act)(a2, act);
        *(V*)(o + 2 * ldo + c + VL) = F(effai_dw3_act)(e2, act);
        *(V*)(o + 3 * ldo + c) = F(effai_dw3_act)(a3, act);
        *(V*)(o + 3 * ldo + c + VL) = F(effai_dw3_act)(e3, act);
    }
    for (; c + VL <= R; c += VL) {
        const T* q = w + c;
        const T* p;
        V a0, a1, a2, a3, wl;
#define EFFAI_DW3_FWD1_TAP(ROW, T_, KW, OP) \
        wl = LD(q + T_ * ldw); \
        p = ROW + c + KW * d1; \
        a0 OP LD(p) * wl; \
        a1 OP LD(p + s1) * wl; \
        a2 OP LD(p + 2 * s1) * wl; \
        a3 OP LD(p + 3 * s1) * wl;
        EFFAI_DW3_FWD1_TAP(r0, 0, 0, =)
        EFFAI_DW3_FWD1_TAP(r0, 1, 1, +=)
        EFFAI_DW3_FWD1_TAP(r0, 2, 2, +=)
        EFFAI_DW3_FWD1_TAP(r1, 3, 0, +=)
        EFFAI_DW3_FWD1_TAP(r1, 4, 1, +=)
        EFFAI_DW3_FWD1_TAP(r1, 5, 2, +=)
        EFFAI_DW3_FWD1_TAP(r2, 6, 0, +=)
        EFFAI_DW3_FWD1_TAP(r2, 7, 1, +=)
        EFFAI_DW3_FWD1_TAP(r2, 8, 2, +=)
#undef EFFAI_DW3_FWD1_TAP
        if (b) {
            V bv = LD(b + c);
            a0 += bv; a1 += bv; a2 += bv; a3 += bv;
        }
        *(V*)(o + c) = F(effai_dw3_act)(a0, act);
        *(V*)(o + ldo + c) = F(effai_dw3_act)(a1, act);
        *(V*)(o + 2 * ldo + c) = F(effai_dw3_act)(a2, act);
        *(V*)(o + 3 * ldo + c) = F(effai_dw3_act)(a3, act);
    }
    for (; c < R; c++) {
        int j, kw;
        for (j = 0; j < 4; j++) {
            T s = 0;
            for (kw = 0; kw < 3; kw++) {
                ptrdiff_t off = j * s1 + kw * d1 + c;
                T t0 = r0[off] * w[kw * ldw + c];
                s = (kw == 0) ? t0 : s + t0;
            }
            for (kw = 0; kw < 3; kw++)
                s += r1[j * s1 + kw * d1 + c] * w[(3 + kw) * ldw + c];
            for (kw = 0; kw < 3; kw++)
                s += r2[j * s1 + kw * d1 + c] * w[(6 + kw) * ldw + c];
            if (b) s += b[c];
            o[j * ldo + c] = F(effai_dw3_act1)(s, act);
        }
    }
}

/* Four output pixels of a 3x3 depthwise filter, all taps inside the input:
   o[j*ldo + c] = act(sum_{kh,kw} r_kh[j*s1 + kw*d1 + c] * w[(3kh+kw)*ldw + c] + b[c])
   for j < 4, c < R.  r0..r2 point at the first tap's column of the three
   input rows; s1 = stride*pixel_stride, d1 = dilation*pixel_stride; b may be
   NULL. */
static void F(effai_dw3_blk4)(const T* r0, const T* r1, const T* r2, const T* w,
                              ptrdiff_t ldw, const T* b, T* o, ptrdiff_t ldo, ptrdiff_t R,
                              ptrdiff_t s1, ptrdiff_t d1, int act) {
    if (s1 == d1)
        F(effai_dw3_blk4_core)(r0, r1, r2, w, ldw, b, o, ldo, R, d1, d1, act);
    else if (s1 == 2 * d1)
        F(effai_dw3_blk4_core)(r0, r1, r2, w, ldw, b, o, ldo, R, 2 * d1, d1, act);
    else
        F(effai_dw3_blk4_core)(r0, r1, r2, w, ldw, b, o, ldo, R, s1, d1, act);
}

/* Weight/bias gradient contributions of four output pixels, every tap inside
   the input (s1, d1 as in blk4; the same always-inline trick lets the compiler
   share the input loads of the common geometries):
   racc[t*ldr + c] += sum_j gm_j[c] * x_{kh}[j*s1 + kw*d1 + c]  (t = 3kh + kw)
   raccb[c] += sum_j gm_j[c],  gm_j = g[j*ldg + c] * act'(y[j*ldg + c]).
   Pixel-block outer, channels inner: every stream is read sequentially (the
   hardware prefetchers follow it), the four masked gradients and the ten
   block sums live in registers and the per-row sums (racc, L1) are read and
   written once per block.  Sums over the block in pixel order. */
static inline __attribute__((always_inline)) void F(effai_dw3_gw4_core)(
        const T* g, const T* y, ptrdiff_t ldg, const T* r0, const T* r1, const T* r2,
        T* racc, ptrdiff_t ldr, T* raccb, ptrdiff_t R, ptrdiff_t s1, ptrdiff_t d1,
        int act) {
    ptrdiff_t c = 0;
    T hi = act == 2 ? (T)6 : (T)HUGE_VAL;
    V zero = {0};
    V vhi = zero + hi;
    /* two vectors (a whole cache line of every stream) per step, as in blk4 */
    for (; c + 2 * VL <= R; c += 2 * VL) {
        V g0 = LD(g + c), h0 = LD(g + c + VL);
        V g1 = LD(g + ldg + c), h1 = LD(g + ldg + c + VL);
        V g2 = LD(g + 2 * ldg + c), h2 = LD(g + 2 * ldg + c + VL);
        V g3 = LD(g + 3 * ldg + c), h3 = LD(g + 3 * ldg + c + VL);
        V a, e, x;
        const T* p;
        if (act != 0) {
#define EFFAI_DW3_MASK(GV, YP) \
            { V yv = LD(YP); GV = (V)((VI)GV & ((yv > zero) & (yv < vhi))); }
            EFFAI_DW3_MASK(g0, y + c) EFFAI_DW3_MASK(h0, y + c + VL)
            EFFAI_DW3_MASK(g1, y + ldg + c) EFFAI_DW3_MASK(h1, y + ldg + c + VL)
            EFFAI_DW3_MASK(g2, y + 2 * ldg + c) EFFAI_DW3_MASK(h2, y + 2 * ldg + c + VL)
            EFFAI_DW3_MASK(g3, y + 3 * ldg + c) EFFAI_DW3_MASK(h3, y + 3 * ldg + c + VL)
#undef EFFAI_DW3_MASK
        }
#define EFFAI_DW3_GW2_TAP(ROW, T_, KW) \
        p = ROW + c + KW * d1; \
        a = g0 * LD(p); e = h0 * LD(p + VL); \
        a += g1 * LD(p + s1); e += h1 * LD(p + s1 + VL); \
        a += g2 * LD(p + 2 * s1); e += h2 * LD(p + 2 * s1 + VL); \
        a += g3 * LD(p + 3 * s1); e += h3 * LD(p + 3 * s1 + VL); \
        *(V*)(racc + T_ * ldr + c) += a; *(V*)(racc + T_ * ldr + c + VL) += e;
        if (r0) {
            EFFAI_DW3_GW2_TAP(r0, 0, 0)
            EFFAI_DW3_GW2_TAP(r0, 1, 1)
            EFFAI_DW3_GW2_TAP(r0, 2, 2)
        }
        if (r1) {
            EFFAI_DW3_GW2_TAP(r1, 3, 0)
            EFFAI_DW3_GW2_TAP(r1, 4, 1)
            EFFAI_DW3_GW2_TAP(r1, 5, 2)
        }
        if (r2) {
            EFFAI_DW3_GW2_TAP(r2, 6, 0)
            EFFAI_DW3_GW2_TAP(r2, 7, 1)
            EFFAI_DW3_GW2_TAP(r2, 8, 2)
        }
#undef EFFAI_DW3_GW2_TAP
        x = g0 + g1; x += g2; x += g3;
        *(V*)(raccb + c) += x;
        x = h0 + h1; x += h2; x += h3;
        *(V*)(raccb + c + VL) += x;
    }
    for (; c + VL <= R; c += VL) {
        V g0 = LD(g + c), g1 = LD(g + ldg + c), g2 = LD(g + 2 * ldg + c);
        V g3 = LD(g + 3 * ldg + c);
        V a, x;
        const T* p;
        if (act != 0) {
            V y0 = LD(y + c), y1 = LD(y + ldg + c), y2 = LD(y + 2 * ldg + c);
            V y3 = LD(y + 3 * ldg + c);
            g0 = (V)((VI)g0 & ((y0 > zero) & (y0 < vhi)));
            g1 = (V)((VI)g1 & ((y1 > zero) & (y1 < vhi)));
            g2 = (V)((VI)g2 & ((y2 > zero) & (y2 < vhi)));
            g3 = (V)((VI)g3 & ((y3 > zero) & (y3 < vhi)));
        }
#define EFFAI_DW3_GW_TAP(ROW, T_, KW) \
        p = ROW + c + KW * d1; \
        a = g0 * LD(p); a += g1 * LD(p + s1); a += g2 * LD(p + 2 * s1); \
        a += g3 * LD(p + 3 * s1); \
        *(V*)(racc + T_ * ldr + c) += a;
        if (r0) {
            EFFAI_DW3_GW_TAP(r0, 0, 0)
            EFFAI_DW3_GW_TAP(r0, 1, 1)
            EFFAI_DW3_GW_TAP(r0, 2, 2)
        }
        if (r1) {
            EFFAI_DW3_GW_TAP(r1, 3, 0)
            EFFAI_DW3_GW_TAP(r1, 4, 1)
            EFFAI_DW3_GW_TAP(r1, 5, 2)
        }
        if (r2) {
            EFFAI_DW3_GW_TAP(r2, 6, 0)
            EFFAI_DW3_GW_TAP(r2, 7, 1)
            EFFAI_DW3_GW_TAP(r2, 8, 2)
        }
#undef EFFAI_DW3_GW_TAP
        x = g0 + g1; x += g2; x += g3;
        *(V*)(raccb + c) += x;
    }
    for (; c < R; c++) {
        T gm[4];
        const T* rows[3];
        int j, kh, kw;
        rows[0] = r0; rows[1] = r1; rows[2] = r2;
        for (j = 0; j < 4; j++) {
            gm[j] = g[j * ldg + c];
            if (act != 0) {
                T yv = y[j * ldg + c];
                gm[j] = (yv > 0 && yv < hi) ? gm[j] : (T)0;
            }
        }
        for (kh = 0; kh < 3; kh++)
            for (kw = 0; kw < 3; kw++) {
                const T* q;
                if (!rows[kh]) continue;
                q = rows[kh] + c + kw * d1;
                T a = gm[0] * q[0];
                a += gm[1] * q[s1];
                a += gm[2] * q[2 * s1];
                a += gm[3] * q[3 * s1];
                racc[(3 * kh + kw) * ldr + c] += a;
            }
        {
            T a = gm[0] + gm[1];
            a += gm[2];
            a += gm[3];
            raccb[c] += a;
        }
    }
}

static void F(effai_dw3_gw4)(const T* g, const T* y, ptrdiff_t ldg, const T* r0,
                             const T* r1, const T* r2, T* racc, ptrdiff_t ldr, T* raccb,
                             ptrdiff_t R, ptrdiff_t s1, ptrdiff_t d1, int act) {
    if (s1 == d1)
        F(effai_dw3_gw4_core)(g, y, ldg, r0, r1, r2, racc, ldr, raccb, R, d1, d1, act);
    else if (s1 == 2 * d1)
        F(effai_dw3_gw4_core)(g, y, ldg, r0, r1, r2, racc, ldr, raccb, R, 2 * d1, d1, act);
    else
        F(effai_dw3_gw4_core)(g, y, ldg, r0, r1, r2, racc, ldr, raccb, R, s1, d1, act);
}

/* One output pixel, any taps: xs[t] points at the input vector of tap t (at
   channel 0) or is NULL for a tap in the padding (skipped).
   racc[t*ldr + c] += gm[c] * xs[t][c],  raccb[c] += gm[c]. */
static void F(effai_dw3_gw1)(const T* g, const T* y, const T** xs, T* racc,
                             ptrdiff_t ldr, T* raccb, ptrdiff_t R, int act) {
    ptrdiff_t c = 0;
    int t;
    T hi = act == 2 ? (T)6 : (T)HUGE_VAL;
    V zero = {0};
    V vhi = zero + hi;
    for (; c + VL <= R; c += VL) {
        V gv = LD(g + c);
        if (act != 0) {
            V yv = LD(y + c);
            gv = (V)((VI)gv & ((yv > zero) & (yv < vhi)));
        }
        for (t = 0; t < 9; t++)
            if (xs[t]) *(V*)(racc + t * ldr + c) += gv * LD(xs[t] + c);
        *(V*)(raccb + c) += gv;
    }
    for (; c < R; c++) {
        T gv = g[c];
        if (act != 0) {
            T yv = y[c];
            gv = (yv > 0 && yv < hi) ? gv : (T)0;
        }
        for (t = 0; t < 9; t++)
            if (xs[t]) racc[t * ldr + c] += gv * xs[t][c];
        raccb[c] += gv;
    }
}

/* dst[c] = act(b[c] + sum_k xs[k][c] * ws[k][c]), taps summed in order k
   (b may be NULL; n may be 0). */
static void F(effai_dw_gather)(T* dst, const T** xs, const T** ws, int n, ptrdiff_t C,
                               const T* b, int act) {
    ptrdiff_t c = 0;
    int k;
    for (; c + 4 * VL <= C; c += 4 * VL) {
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (k = 0; k < n; k++) {
            const T* xp = xs[k] + c;
            const T* wp = ws[k] + c;
            a0 += LD(xp) * LD(wp);
            a1 += LD(xp + VL) * LD(wp + VL);
            a2 += LD(xp + 2 * VL) * LD(wp + 2 * VL);
            a3 += LD(xp + 3 * VL) * LD(wp + 3 * VL);
        }
        if (b) {
            a0 += LD(b + c); a1 += LD(b + c + VL);
            a2 += LD(b + c + 2 * VL); a3 += LD(b + c + 3 * VL);
        }
        *(V*)(dst + c) = F(effai_dw3_act)(a0, act);
        *(V*)(dst + c + VL) = F(effai_dw3_act)(a1, act);
        *(V*)(dst + c + 2 * VL) = F(effai_dw3_act)(a2, act);
        *(V*)(dst + c + 3 * VL) = F(effai_dw3_act)(a3, act);
    }
    for (; c + VL <= C; c += VL) {
        V a0 = {0};
        for (k = 0; k < n; k++) a0 += LD(xs[k] + c) * LD(ws[k] + c);
        if (b) a0 += LD(b + c);
        *(V*)(dst + c) = F(effai_dw3_act)(a0, act);
    }
    for (; c < C; c++) {
        T s = 0;
        for (k = 0; k < n; k++) s += xs[k][c] * ws[k][c];
        if (b) s += b[c];
        dst[c] = F(effai_dw3_act1)(s, act);
    }
}

/* Input gradient of one input row (gather form), any filter size/stride:
   gxr[iw*C + c] = sum over the valid taps (kh, kw) in that order of
   rows[kh][ow*C + c] * w[(kh*KW + kw)*C + c].  rows[kh] is the (masked)
   grad_out row that tap row kh reads, or NULL; ctab[iw*(1 + 2*KW)] holds the
   number of valid column taps of input column iw, then (kw, ow) pairs in
   increasing kw (the same for every row: computed once per call).  xs, ws:
   scratch of KH*KW pointers. */
static void F(effai_dw_gx_row)(T* gxr, const T** rows, ptrdiff_t KH, ptrdiff_t KW,
                               const T* w, ptrdiff_t C, ptrdiff_t W, const ptrdiff_t* ctab,
                               const T** xs, const T** ws) {
    ptrdiff_t iw, kh, j;
    for (iw = 0; iw < W; iw++) {
        const ptrdiff_t* e = ctab + iw * (1 + 2 * KW);
        int k = 0;
        for (kh = 0; kh < KH; kh++) {
            const T* r = rows[kh];
            if (!r) continue;
            for (j = 0; j < e[0]; j++) {
                xs[k] = r + e[2 + 2 * j] * C;
                ws[k] = w + (kh * KW + e[1 + 2 * j]) * C;
                k++;
            }
        }
        F(effai_dw_gather)(gxr + iw * C, xs, ws, k, C, (const T*)0, 0);
    }
}

#undef LD
#endif /* EFFAI_DW_TEMPLATE */
