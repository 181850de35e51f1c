/* SPDX-License-Identifier: Apache-2.0 */
/* kiloml runtime: Ed25519 signature verification (RFC 8032 section 5.1.7), integer only.
 *
 * The math is the well-known one (ref10 / TweetNaCl): the field GF(p), p = 2^255 - 19;
 * the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 in extended coordinates
 * (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z (Hisil, Wong, Carter, Dawson 2008); the check
 * [S]B - [k]A == R done as one joint double-and-add over the bits of S and k.
 *
 * A field element is 8 little-endian 32-bit words holding any value below 2^256 that is
 * congruent to it mod p: 2^256 = 2 * 2^255 = 38 (mod p), so a carry out of the top word is
 * folded back in as 38 and nothing needs a full reduction until a value is compared or
 * encoded. 32 x 32 -> 64-bit products suit a 32-bit core (one UMULL/UMLAL on a
 * Cortex-M3/M4). Values are read and written byte by byte: any endianness.
 *
 * Verification handles public data (the signature, the key, the message), so it is
 * variable time; it must be right on every input, which the tests check against OpenSSL. */
#include "kml_fp.h" /* first: kiloml's build rules (no float here) */

#include "kml_ed25519.h"

#include <string.h> /* memcmp, memcpy, memset */

#include "kml_sha512.h"

/* The big steps stay out of line: each one's stack frame is then live only while it runs
 * (inlined, the compiler may keep them all at once), which bounds the verify's stack. */
#if defined(__GNUC__)
#define KML_ED_OUTLINE __attribute__((noinline))
#else
#define KML_ED_OUTLINE
#endif

typedef uint32_t kml_fe[8]; /* value < 2^256, congruent mod p to the element */

typedef struct {
    kml_fe x, y, z, t;
} kml_ge;

/* d = -121665 / 121666 and 2d (the addition law's constant) */
static const kml_fe kml_ed_d2 = {0x26b2f159u, 0xebd69b94u, 0x8283b156u, 0x00e0149au,
                                 0xeef3d130u, 0x198e80f2u, 0x56dffce7u, 0x2406d9dcu};
static const kml_fe kml_ed_d = {0x135978a3u, 0x75eb4dcau, 0x4141d8abu, 0x00700a4du,
                                0x7779e898u, 0x8cc74079u, 0x2b6ffe73u, 0x52036ceeu};
/* sqrt(-1) = 2^((p-1)/4) */
static const kml_fe kml_ed_sqrtm1 = {0x4a0ea0b0u, 0xc4ee1b27u, 0xad2fe478u, 0x2f431806u,
                                     0x3dfbd7a7u, 0x2b4d0099u, 0x4fc1df0bu, 0x2b832480u};
static const kml_fe kml_ed_p = {0xffffffedu, 0xffffffffu, 0xffffffffu, 0xffffffffu,
                                0xffffffffu, 0xffffffffu, 0xffffffffu, 0x7fffffffu};
/* the group order L = 2^252 + 27742317777372353535851937790883648493 */
static const uint32_t kml_ed_l[8] = {0x5cf5d3edu, 0x5812631au, 0xa2f79cd6u, 0x14def9deu,
                                     0x00000000u, 0x00000000u, 0x00000000u, 0x10000000u};
/* the base point B: y = 4/5, x even; Z = 1, T = xy */
static const kml_ge kml_ed_base = {
    {0x8f25d51au, 0xc9562d60u, 0x9525a7b2u, 0x692cc760u, 0xfdd6dc5cu, 0xc0a4e231u,
     0xcd6e53feu, 0x216936d3u},
    {0x66666658u, 0x66666666u, 0x66666666u, 0x66666666u, 0x66666666u, 0x66666666u,
     0x66666666u, 0x66666666u},
    {1u, 0u, 0u, 0u, 0u, 0u, 0u, 0u},
    {0xa5b7dda3u, 0x6dde8ab3u, 0x775152f5u, 0x20f09f80u, 0x64abe37du, 0x66ea4e8eu,
     0xd78b7665u, 0x67875f0fu}};

/* ---- the field GF(2^255 - 19) ---- */

/* r += 38 * c (c: what overflowed 2^256). A second overflow leaves r below 38 * c, so
 * the loop runs at most twice. */
static void kml_fe_fold(kml_fe r, uint32_t c)
{
    while (c != 0) {
        uint64_t t = (uint64_t)c * 38u;
        uint32_t i;
        for (i = 0, c = 0; t != 0; ++i) { /* the carry dies out within a word or two */
            if (i == 8) {
                c = (uint32_t)t; /* out of the top word: fold again */
                break;
            }
            t += r[i];
            r[i] = (uint32_t)t;
            t >>= 32;
        }
    }
}

static void kml_fe_add(kml_fe r, const kml_fe a, const kml_fe b)
{
    uint64_t t = 0;
    uint32_t i;
    for (i = 0; i < 8; ++i) {
        t += (uint64_t)a[i] + b[i];
        r[i] = (uint32_t)t;
        t >>= 32;
    }
    kml_fe_fold(r, (uint32_t)t);
}

static void kml_fe_sub(kml_fe r, const kml_fe a, const kml_fe b)
{
    uint32_t i, borrow = 0;
    for (i = 0; i < 8; ++i) {
        const uint64_t t = (uint64_t)a[i] - b[i] - borrow; /* wraps when negative */
        r[i] = (uint32_t)t;
        borrow = (uint32_t)(t >> 63);
    }
    /* a < b left a - b + 2^256 in r: take 2^256 = 38 (mod p) off again, which may wrap
     * (add 2^256) once more when r < 38, and so needs one more 38 off at most */
    while (borrow != 0) {
        uint32_t sub = 38;
        for (i = 0; sub != 0 && i < 8; ++i) { /* the borrow dies out within a word or two */
            const uint64_t t = (uint64_t)r[i] - sub;
            r[i] = (uint32_t)t;
            sub = (uint32_t)(t >> 63);
        }
        borrow = sub;
    }
}

/* r = t mod p, roughly: the 512-bit product t folded to 256 bits (high half x 38) */
static void kml_fe_reduce(kml_fe r, const uint32_t t[16])
{
    uint64_t c = 0;
    uint32_t i;
    for (i = 0; i < 8; ++i) {
        c += (uint64_t)t[i + 8] * 38u + t[i];
        r[i] = (uint32_t)c;
        c >>= 32;
    }
    kml_fe_fold(r, (uint32_t)c); /* c <= 38 */
}

/* one step of a row of kml_fe_mul: t[i + j] += a[i] * b[j] + carry */
#define KML_FE_MAC(j)                                 \
    do {                                              \
        x = (uint64_t)ai * b[j] + t[i + (j)] + c;     \
        t[i + (j)] = (uint32_t)x;                     \
        c = (uint32_t)(x >> 32);                      \
    } while (0)

/* r = a * b: schoolbook, row by row. a[i] * b[j] + t[i + j] + carry is at most
 * (2^32 - 1)^2 + 2 (2^32 - 1) = 2^64 - 1: a 64-bit sum never overflows. Each row is
 * written out (no loop counter or branch per product: an eighth of a verify, for 128 B
 * of flash on a Cortex-M4). r may alias a or b (it is written last). */
static void kml_fe_mul(kml_fe r, const kml_fe a, const kml_fe b)
{
    uint32_t t[16], i;
    for (i = 0; i < 8; ++i) { /* t[8 + i] is written at the end of row i, before it is read */
        t[i] = 0;
    }
    for (i = 0; i < 8; ++i) {
        const uint32_t ai = a[i];
        uint32_t c = 0;
        uint64_t x;
        KML_FE_MAC(0);
        KML_FE_MAC(1);
        KML_FE_MAC(2);
        KML_FE_MAC(3);
        KML_FE_MAC(4);
        KML_FE_MAC(5);
        KML_FE_MAC(6);
        KML_FE_MAC(7);
        t[i + 8] = c;
    }
    kml_fe_reduce(r, t);
}
#undef KML_FE_MAC

/* r = a^2: the 28 cross products once, doubled, then the 8 squares (36 products, not
 * 64; most of a verify is squarings). r may alias a. */
static void kml_fe_sq(kml_fe r, const kml_fe a)
{
    uint32_t t[16], i, j, top = 0;
    uint64_t c;
    for (i = 0; i < 8; ++i) { /* t[8 + i] comes from row i's carry (t[15]: none, 0) */
        t[i] = 0;
    }
    t[15] = 0;
    for (i = 0; i < 7; ++i) {
        const uint32_t ai = a[i];
        uint32_t carry = 0;
        for (j = i + 1; j < 8; ++j) {
            const uint64_t x = (uint64_t)ai * a[j] + t[i + j] + carry;
            t[i + j] = (uint32_t)x;
            carry = (uint32_t)(x >> 32);
        }
        t[i + 8] = carry; /* not written yet by an earlier row */
    }
    for (i = 0; i < 16; ++i) { /* x 2: the sum of cross products is below 2^511 */
        const uint32_t w = t[i];
        t[i] = (w << 1) | top;
        top = w >> 31;
    }
    c = 0;
    for (i = 0; i < 8; ++i) {
        c += (uint64_t)a[i] * a[i] + t[2 * i]; /* < 2^64: c < 2^32 after each shift */
        t[2 * i] = (uint32_t)c;
        c >>= 32;
        c += t[2 * i + 1];
        t[2 * i + 1] = (uint32_t)c;
        c >>= 32;
    }
    kml_fe_reduce(r, t);
}

/* r = a^(2^n) * b, n >= 1; r may alias a or b */
static void kml_fe_sqn_mul(kml_fe r, const kml_fe a, uint32_t n, const kml_fe b)
{
    kml_fe t;
    kml_fe_sq(t, a);
    while (--n != 0) {
        kml_fe_sq(t, t);
    }
    kml_fe_mul(r, t, b);
}

/* r = z^(2^250 - 1) and z11 = z^11: the common part of ref10's addition chains for
 * z^(p - 2) = z^(2^255 - 21) (the inverse) and z^((p - 5) / 8) = z^(2^252 - 3) (the
 * square root). Each power then takes 254 (251) squarings and 11 multiplications, where
 * square-and-multiply would also multiply once per set bit of the exponent (~250). */
KML_ED_OUTLINE static void kml_fe_pow250(kml_fe r, kml_fe z11, const kml_fe z)
{
    kml_fe z2, z9, a, b;
    kml_fe_sq(z2, z);
    kml_fe_sqn_mul(z9, z2, 2, z); /* z^8 * z */
    kml_fe_mul(z11, z2, z9);
    kml_fe_sqn_mul(a, z11, 1, z9); /* z^22 * z^9 = z^(2^5 - 1) */
    kml_fe_sqn_mul(a, a, 5, a);    /* 2^10 - 1 */
    kml_fe_sqn_mul(b, a, 10, a);   /* 2^20 - 1 */
    kml_fe_sqn_mul(b, b, 20, b);   /* 2^40 - 1 */
    kml_fe_sqn_mul(a, b, 10, a);   /* 2^50 - 1 */
    kml_fe_sqn_mul(b, a, 50, a);   /* 2^100 - 1 */
    kml_fe_sqn_mul(b, b, 100, b);  /* 2^200 - 1 */
    kml_fe_sqn_mul(r, b, 50, a);   /* 2^250 - 1 */
}

/* r = 1 / z = z^(p - 2) (Fermat); z = 0 gives 0 */
static void kml_fe_invert(kml_fe r, const kml_fe z)
{
    kml_fe t, z11;
    kml_fe_pow250(t, z11, z);
    kml_fe_sqn_mul(r, t, 5, z11); /* (2^250 - 1) * 2^5 + 11 = 2^255 - 21 */
}

/* r = z^((p - 5) / 8) */
static void kml_fe_pow2523(kml_fe r, const kml_fe z)
{
    kml_fe t, z11;
    kml_fe_pow250(t, z11, z);
    kml_fe_sqn_mul(r, t, 2, z); /* (2^250 - 1) * 4 + 1 = 2^252 - 3 */
}

/* r = -a, as p - a (p = 0 mod p: no constant zero needed); r may alias a */
static void kml_fe_neg(kml_fe r, const kml_fe a)
{
    kml_fe_sub(r, kml_ed_p, a);
}

/* r = a mod p, the one representative below p: a < 2^256 = 2p + 38, so at most two
 * subtractions of p */
static void kml_fe_canon(kml_fe r, const kml_fe a)
{
    uint32_t i, k, borrow;
    kml_fe t;
    for (i = 0; i < 8; ++i) { /* r may be a: no memcpy */
        r[i] = a[i];
    }
    for (k = 0; k < 2; ++k) {
        borrow = 0;
        for (i = 0; i < 8; ++i) {
            const uint64_t d = (uint64_t)r[i] - kml_ed_p[i] - borrow;
            t[i] = (uint32_t)d;
            borrow = (uint32_t)(d >> 63);
        }
        if (borrow == 0) {
            memcpy(r, t, sizeof(kml_fe));
        }
    }
}

static int kml_fe_is_zero(const kml_fe a)
{
    kml_fe c;
    uint32_t i, acc = 0;
    kml_fe_canon(c, a);
    for (i = 0; i < 8; ++i) {
        acc |= c[i];
    }
    return acc == 0;
}

/* the 32 little-endian bytes of a number below 2^256 */
static void kml_words_load(uint32_t w[8], const uint8_t *s)
{
    uint32_t i;
    for (i = 0; i < 8; ++i) {
        w[i] = (uint32_t)s[4 * i] | ((uint32_t)s[4 * i + 1] << 8) |
               ((uint32_t)s[4 * i + 2] << 16) | ((uint32_t)s[4 * i + 3] << 24);
    }
}

/* ---- the curve ---- */

/* r = p + q: the unified addition of Hisil et al. ("add-2008-hwcd-3"), complete on this
 * curve (a = -1 is a square and d is not, mod p): right for doubling, the identity and
 * the small-order points too, which a public key may be. 9 multiplications. r may alias
 * p or q. */
static void kml_ge_add(kml_ge *r, const kml_ge *p, const kml_ge *q)
{
    kml_fe a, b, c, d, e;
    kml_fe_sub(a, p->y, p->x);
    kml_fe_sub(e, q->y, q->x);
    kml_fe_mul(a, a, e); /* (Y1 - X1)(Y2 - X2) */
    kml_fe_add(b, p->y, p->x);
    kml_fe_add(e, q->y, q->x);
    kml_fe_mul(b, b, e); /* (Y1 + X1)(Y2 + X2) */
    kml_fe_mul(c, p->t, q->t);
    kml_fe_mul(c, c, kml_ed_d2); /* 2d T1 T2 */
    kml_fe_mul(d, p->z, q->z);
    kml_fe_add(d, d, d); /* 2 Z1 Z2 */
    kml_fe_sub(e, b, a); /* E */
    kml_fe_add(b, b, a); /* H */
    kml_fe_sub(a, d, c); /* F */
    kml_fe_add(d, d, c); /* G */
    kml_fe_mul(r->x, e, a);
    kml_fe_mul(r->y, d, b);
    kml_fe_mul(r->z, a, d);
    kml_fe_mul(r->t, e, b);
}

/* r = 2p ("dbl-2008-hwcd" with a = -1, as ref10's ge_p2_dbl and its p1p1 -> p3 step):
 * 4 squarings and 4 multiplications. With E = 2XY = (X + Y)^2 - X^2 - Y^2,
 * G = Y^2 - X^2, H = -(X^2 + Y^2) and F = G - 2Z^2 the double is (EF : GH : FG : EH);
 * this forms E, G, -H and -F, so every coordinate comes out negated: the same projective
 * point. T is not read. r may alias p (p is read in full before r is written). */
static void kml_ge_dbl(kml_ge *r, const kml_ge *p)
{
    kml_fe xx, yy, zz, e;
    kml_fe_sq(xx, p->x);
    kml_fe_sq(yy, p->y);
    kml_fe_sq(zz, p->z);
    kml_fe_add(zz, zz, zz); /* 2 Z^2 */
    kml_fe_add(e, p->x, p->y);
    kml_fe_sq(e, e);            /* (X + Y)^2 */
    kml_fe_add(r->t, yy, xx);   /* -H */
    kml_fe_sub(r->z, yy, xx);   /* G */
    kml_fe_sub(e, e, r->t);     /* E */
    kml_fe_sub(zz, zz, r->z);   /* -F */
    kml_fe_mul(r->x, e, zz);    /* -EF */
    kml_fe_mul(r->y, r->t, r->z); /* -GH */
    kml_fe_mul(r->z, r->z, zz); /* -FG */
    kml_fe_mul(r->t, e, r->t);  /* -EH */
}

/* ---- scalars mod L ---- */

static int kml_sc_below_l(const uint32_t s[8])
{
    uint32_t i = 8;
    while (i-- > 0) {
        if (s[i] != kml_ed_l[i]) {
            return s[i] < kml_ed_l[i];
        }
    }
    return 0; /* s == L */
}

/* r = h mod L for the 64-byte little-endian h: shift in one bit at a time from the top,
 * subtracting L whenever the remainder reaches it (r < L < 2^253, so 2r + 1 fits in 256
 * bits). 512 steps of a few word operations: small next to the scalar multiplication. */
KML_ED_OUTLINE static void kml_sc_reduce512(uint32_t r[8], const uint8_t h[64])
{
    uint32_t i, j;
    for (j = 0; j < 8; ++j) {
        r[j] = 0;
    }
    for (i = 512; i-- > 0;) {
        uint32_t bit = (uint32_t)(h[i >> 3] >> (i & 7)) & 1u;
        for (j = 0; j < 8; ++j) {
            const uint32_t w = r[j];
            r[j] = (w << 1) | bit;
            bit = w >> 31;
        }
        if (!kml_sc_below_l(r)) {
            uint32_t borrow = 0;
            for (j = 0; j < 8; ++j) {
                const uint64_t d = (uint64_t)r[j] - kml_ed_l[j] - borrow;
                r[j] = (uint32_t)d;
                borrow = (uint32_t)(d >> 63);
            }
        }
    }
}

/* ---- points: decoding, encoding, the check ---- */

/* The point a public key encodes (RFC 8032 5.1.3, with OpenSSL's two leniencies): y is the
 * low 255 bits read mod p, so y >= p is accepted as y - p; x comes from
 * x^2 = (y^2 - 1) / (d y^2 + 1) as x = u v^3 (u v^7)^((p - 5) / 8), u = y^2 - 1,
 * v = d y^2 + 1, times sqrt(-1) when v x^2 = -u; neither: not a point, 0. The sign bit
 * picks the x of that parity; for x = 0 it changes nothing (RFC 8032 rejects x = 0 with
 * the sign bit set, OpenSSL accepts it). */
KML_ED_OUTLINE static int kml_ge_decode(kml_ge *a, const uint8_t s[32])
{
    kml_fe u, v, v3, t;
    kml_words_load(a->y, s);
    a->y[7] &= 0x7fffffffu;
    memset(a->z, 0, sizeof a->z);
    a->z[0] = 1;
    kml_fe_sq(u, a->y);
    kml_fe_mul(v, u, kml_ed_d);
    kml_fe_sub(u, u, a->z); /* u = y^2 - 1 */
    kml_fe_add(v, v, a->z); /* v = d y^2 + 1 */
    kml_fe_sq(v3, v);
    kml_fe_mul(v3, v3, v); /* v^3 */
    kml_fe_sq(t, v3);
    kml_fe_mul(t, t, v);
    kml_fe_mul(t, t, u); /* u v^7 */
    kml_fe_pow2523(t, t);
    kml_fe_mul(t, t, v3);
    kml_fe_mul(a->x, t, u); /* x = u v^3 (u v^7)^((p - 5) / 8) */
    kml_fe_sq(t, a->x);
    kml_fe_mul(t, t, v); /* v x^2 */
    kml_fe_sub(v3, t, u);
    if (!kml_fe_is_zero(v3)) {
        kml_fe_add(v3, t, u);
        if (!kml_fe_is_zero(v3)) {
            return 0; /* (y^2 - 1) / (d y^2 + 1) is not a square: no such point */
        }
        kml_fe_mul(a->x, a->x, kml_ed_sqrtm1);
    }
    kml_fe_canon(a->x, a->x);
    if ((a->x[0] & 1u) != (uint32_t)(s[31] >> 7)) {
        kml_fe_neg(a->x, a->x);
    }
    kml_fe_mul(a->t, a->x, a->y);
    return 1;
}

/* the 32-byte encoding of p: y = Y/Z below p, little-endian, the parity of x = X/Z in the
 * top bit */
KML_ED_OUTLINE static void kml_ge_encode(uint8_t s[32], const kml_ge *p)
{
    kml_fe zi, x, y;
    uint32_t i;
    kml_fe_invert(zi, p->z);
    kml_fe_mul(x, p->x, zi);
    kml_fe_mul(y, p->y, zi);
    kml_fe_canon(x, x);
    kml_fe_canon(y, y);
    for (i = 0; i < 32; ++i) {
        s[i] = (uint8_t)(y[i >> 2] >> (8 * (i & 3)));
    }
    s[31] = (uint8_t)(s[31] | ((x[0] & 1u) << 7));
}

/* r = [s]B + [k]q for s, k < 2^253: one double-and-add over both scalars' bits at once
 * (Straus / Shamir), adding B, q or B + q by the pair of bits: 253 doublings and about
 * 190 additions, where two separate ladders would double twice as often. */
KML_ED_OUTLINE static void kml_ge_double_scalarmult(kml_ge *r, const uint32_t s[8],
                                                    const uint32_t k[8], const kml_ge *q)
{
    kml_ge bq;
    const kml_ge *table[3]; /* B (in flash), q, B + q: pointers, no copies on the stack */
    uint32_t i;
    kml_ge_add(&bq, &kml_ed_base, q);
    table[0] = &kml_ed_base;
    table[1] = q;
    table[2] = &bq;
    memset(r, 0, sizeof *r); /* the identity (0 : 1 : 1 : 0) */
    r->y[0] = 1;
    r->z[0] = 1;
    for (i = 253; i-- > 0;) {
        const uint32_t pick =
            ((s[i >> 5] >> (i & 31)) & 1u) | (((k[i >> 5] >> (i & 31)) & 1u) << 1);
        kml_ge_dbl(r, r);
        if (pick != 0) {
            kml_ge_add(r, r, table[pick - 1]);
        }
    }
}

/* The hash step in its own frame: the SHA-512 context (208 bytes) is not on the stack
 * while the points are. */
KML_ED_OUTLINE static void kml_ed_challenge(uint32_t k[8], const uint8_t signature[64],
                                            const uint8_t public_key[32],
                                            const uint8_t *message, uint32_t n)
{
    kml_sha512_ctx c;
    uint8_t h[KML_SHA512_BYTES];
    kml_sha512_init(&c);
    kml_sha512_update(&c, signature, 32); /* R as given */
    kml_sha512_update(&c, public_key, 32); /* the key as given, not re-encoded */
    kml_sha512_update(&c, message, n);
    kml_sha512_final(&c, h);
    kml_sc_reduce512(k, h);
}

int32_t kml_ed25519_verify(const uint8_t signature[KML_ED25519_SIGNATURE_BYTES],
                           const uint8_t *message, uint32_t n,
                           const uint8_t public_key[KML_ED25519_PUBLIC_KEY_BYTES])
{
    kml_ge a, check;
    uint32_t s[8], k[8];
    uint8_t r[32];
    kml_words_load(s, signature + 32);
    if (!kml_sc_below_l(s)) {
        return 0; /* S >= L: malleable (S + L verifies the same equation), refused */
    }
    if (!kml_ge_decode(&a, public_key)) {
        return 0;
    }
    kml_fe_neg(a.x, a.x); /* -A = (-X : Y : Z : -T) */
    kml_fe_neg(a.t, a.t);
    kml_ed_challenge(k, signature, public_key, message, n);
    kml_ge_double_scalarmult(&check, s, k, &a);
    kml_ge_encode(r, &check);
    return memcmp(r, signature, 32) == 0 ? 1 : 0;
}
