/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: the floating-point rules every kiloml .c file is built under.
 *
 * Included first by every .c file kiloml ships or generates (never by a public header,
 * so your own code is not affected). The library computes its features and scores with
 * the same float operations, in the same order, as the Python reference it was verified
 * against, so they agree bit for bit. That holds only while the compiler keeps each
 * a * b + c as a multiply and an add, each rounded: a fused multiply-add (FMA) rounds
 * once and gives different bits. GCC contracts by default outside ISO mode (-std=gnu11,
 * Arduino's and most IDEs' choice; -ffp-contract=fast), clang within a statement.
 *
 *   GCC:   it ignores (and warns about) #pragma STDC FP_CONTRACT, but takes
 *          -ffp-contract=off per function from #pragma GCC optimize; every function
 *          after this line, including under -flto, is built without contraction.
 *   clang: #pragma STDC FP_CONTRACT OFF. clang's -ffp-contract=fast disregards every
 *          pragma by design: do not build this library with it (kiloml verify finds
 *          any FMA in the linked ARM image and names the function).
 *   other: #pragma STDC FP_CONTRACT OFF (C99 7.12.2).
 */
#ifndef KML_FP_H
#define KML_FP_H

#if defined(__FAST_MATH__)
#error "kiloml: this library must not be built with -ffast-math or -Ofast: they let the compiler reorder, fuse and drop floating-point operations, so its results would no longer match, bit for bit, the Python reference it was verified against (build kiloml's files with -fno-fast-math)"
#endif
#if defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__
#error "kiloml: this library must not be built with -ffinite-math-only: it checks inputs for NaN and infinity, which that flag assumes away (build kiloml's files without it)"
#endif
#if defined(__FLT_EVAL_METHOD__) && __FLT_EVAL_METHOD__ != 0 && __FLT_EVAL_METHOD__ != -1
#error "kiloml: this target evaluates float arithmetic in a wider type (FLT_EVAL_METHOD != 0, e.g. x87 without SSE): results would differ from the verified Python reference (use SSE2: -msse2 -mfpmath=sse)"
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#if defined(__FMA__) || defined(__FMA4__) || defined(__aarch64__) || defined(__ARM_NEON) || \
    defined(__ARM_FEATURE_MVE)
/* Where vectors have fused multiply-adds, GCC 12's loop vectorizer forms them (x86's
 * vfmaddsub from alternating a*b-c, a*b+c lanes, as in the FFT's butterflies) whatever
 * -ffp-contract says: no loop vectorization there. Cortex-M cores without MVE are not
 * affected, and their code is exactly -ffp-contract=off's. */
#pragma GCC optimize("no-tree-loop-vectorize")
#endif
#else
#pragma STDC FP_CONTRACT OFF
#endif

#endif
