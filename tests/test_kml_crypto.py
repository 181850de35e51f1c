"""The update checks a device makes before it runs a model update (issue 17): kml_sha256,
kml_sha512 and kml_ed25519_verify (kiloml/runtime/) against hashlib and OpenSSL (the
`cryptography` package wraps it). Host gcc under kiloml's strict flags and again under
AddressSanitizer + UBSan; the field and scalar arithmetic white-box on its carry edges; the
Cortex-M4F on QEMU (the same answers, bounded instructions and stack).

Edge cases are made with a small pure-Python Ed25519 (RFC 8032's formulas) and decided by
OpenSSL; kml_ed25519_verify must decide each one the same way."""

from __future__ import annotations

import functools
import hashlib
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiloml.blob import crypto_harness as ch
from kiloml.codegen.library import RUNTIME_DIR, STRICT_CFLAGS

# ---- a pure-Python Ed25519, to make the edge cases (never the thing under test) ----

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def point_add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(s: int, p: Point) -> Point:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = point_add(q, p)
        p, s = point_add(p, p), s >> 1
    return q


def point_neg(p: Point) -> Point:
    return (-p[0] % P, p[1], p[2], -p[3] % P)


def point_eq(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def encode(p: Point) -> bytes:
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(s: bytes) -> Point | None:
    """OpenSSL's reading: y mod p, and the sign bit ignored when x = 0."""
    v = int.from_bytes(s, "little")
    y, sign = (v & (1 << 255) - 1) % P, v >> 255
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = -x % P
    return (x, y, 1, x * y % P)


BASE = decode((4 * pow(5, P - 2, P)).to_bytes(32, "little"))
assert BASE is not None


def challenge(r: bytes, key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + key + message).digest(), "little") % L


def order(p: Point) -> int | None:
    q = p
    for k in range(1, 9):
        if point_eq(q, IDENTITY):
            return k
        q = point_add(q, p)
    return None


def torsion() -> list[Point]:
    """The 8 points of small order: [L] of a point of full order 8L generates them."""
    rng = random.Random(8)
    while True:
        p = decode(rng.randbytes(32))
        if p is not None:
            t = point_mul(L, p)
            if order(t) == 8:
                return [point_mul(i, t) for i in range(8)]


TORSION = torsion()


def signature(r: bytes, s: int) -> bytes:
    return r + s.to_bytes(32, "little")


def with_sign_bit(enc: bytes) -> bytes:
    return enc[:31] + bytes([enc[31] | 0x80])


def noncanonical(y: int, sign: int = 0) -> bytes:
    """The encoding of y + p (below 2^255 for y < 19)."""
    return (y + P | sign << 255).to_bytes(32, "little")


def openssl(sig: bytes, message: bytes, key: bytes) -> int:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
    except InvalidSignature:
        return 0
    return 1


def private_key(rng: random.Random) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def raw_public(k: Ed25519PrivateKey) -> bytes:
    return k.public_key().public_bytes_raw()


def secret_scalar(seed: bytes) -> int:
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] = h[31] & 127 | 64
    return int.from_bytes(h, "little")


# RFC 8032 section 7.1: secret key, public key, message, signature
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
     "f9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
     "f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76098"
     "4dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e"
     "9f77b1e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a"
     "1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550e"
     "e3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da9"
     "03401aa62100ab5d1a36553e06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefef"
     "d75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83"
     "f4a41da4af2b74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532e"
     "d8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6"
     "079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f27088d78b7e883c8759d2c4f5c65adb7553878ad575f9"
     "fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b0707e0"
     "917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128bab27af87a71314f318c782b23ebfe80"
     "8b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2"
     "af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb751fb73e666c6c655ad"
     "e8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c"
     "4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310f"
     "dc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
     "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939"
     "ae49e488acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308a"
     "a342721aac0943bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f25"
     "6656168e6c496afc5fb93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba7"
     "7c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412"
     "c091c6315cf4fde7cb68606937380db2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86ab"
     "a41c0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0",
     "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c4"
     "36d94b5e8fcd4f681e30a6ac00a9704a188a03"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3"
     "feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c664"
     "31e0303dca179c138ac17ad9bef1177331a704"),
]


def rfc_cases() -> list[tuple[bytes, bytes, bytes]]:
    """(signature, message, key) of each vector, checked against OpenSSL's own signing
    (Ed25519 is deterministic): a mistyped digit cannot pass as a vector."""
    out = []
    for sk, pk, msg, sig in RFC8032:
        k = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sk))
        m, s, key = bytes.fromhex(msg), bytes.fromhex(sig), bytes.fromhex(pk)
        assert raw_public(k) == key and k.sign(m) == s
        out.append((s, m, key))
    return out


def random_signatures(n: int, seed: int, max_len: int = 300) -> list[tuple[bytes, bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = private_key(rng)
        m = rng.randbytes(rng.randrange(max_len + 1) if i % 10 else 0)
        out.append((k.sign(m), m, raw_public(k)))
    return out


def flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def verify_all(exe: Path, triples: list[tuple[bytes, bytes, bytes]]) -> list[int]:
    results = ch.run_host(exe, [ch.verify(s, m, k) for s, m, k in triples])
    return [int(r.value) for r in results]


# ---- builds ----

@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("crypto")
    return {"strict": ch.build_host(work), "asan": ch.build_host(work, sanitize=True)}


RUNTIME_FILES = ["kml_sha256", "kml_sha512", "kml_ed25519"]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-pedantic"]
ARM_M4F = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
COMPILERS = {
    "gcc": ["gcc", *STRICT_CFLAGS],
    "clang": ["clang", *STRICT_CFLAGS],
    "g++": ["g++", "-x", "c++", "-std=c++11", *WARNINGS],
    "clang++": ["clang++", "-x", "c++", "-std=c++17", *WARNINGS],
    "arm-none-eabi-gcc m4f": ["arm-none-eabi-gcc", *ARM_M4F, *STRICT_CFLAGS],
    "arm-none-eabi-gcc m0": ["arm-none-eabi-gcc", "-mcpu=cortex-m0", "-mthumb", *STRICT_CFLAGS],
    "arm-none-eabi-gcc big-endian": ["arm-none-eabi-gcc", "-mcpu=cortex-r5", "-mbig-endian",
                                     *STRICT_CFLAGS],
}
ALLOWED_UNDEFINED = {"memcpy", "memset", "memcmp"}  # no malloc, no libm, nothing else
SHA512_API = {"kml_sha512_init", "kml_sha512_update", "kml_sha512_final"}  # kml_ed25519's


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_builds_clean_and_self_contained(compiler: str, tmp_path: Path) -> None:
    """Every file -Wall -Wextra -Werror -pedantic clean as C99 and as C++, at -O0 / -O2 /
    -Os, for the host and for Arm (either endianness); the objects call only memcpy /
    memset / memcmp (compilers' helpers __aeabi_* aside) and kml_ed25519 kml_sha512."""
    cmd = COMPILERS[compiler]
    nm = "arm-none-eabi-nm" if cmd[0].startswith("arm") else "nm"
    for name in RUNTIME_FILES:
        for opt in ("-O0", "-O2", "-Os"):
            obj = tmp_path / f"{name}{opt}.o"
            subprocess.run([*cmd, opt, f"-I{RUNTIME_DIR}", "-c", str(RUNTIME_DIR / f"{name}.c"),
                            "-o", str(obj)], check=True)
            out = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True,
                                 check=True).stdout.split()
            undefined = {s for s in out if s not in ("U", "w") and not s.startswith("__aeabi_")}
            allowed = ALLOWED_UNDEFINED | (SHA512_API if name == "kml_ed25519" else set())
            assert undefined <= allowed, (compiler, name, opt, undefined)


def test_house_style() -> None:
    for name in RUNTIME_FILES:
        src = (RUNTIME_DIR / f"{name}.c").read_text().splitlines()
        assert src[0] == "/* SPDX-License-Identifier: Apache-2.0 */"
        assert next(ln for ln in src if ln.startswith("#include")).startswith(
            '#include "kml_fp.h"')
        head = (RUNTIME_DIR / f"{name}.h").read_text()
        guard = name.upper() + "_H"
        assert f"#ifndef {guard}\n#define {guard}" in head and 'extern "C"' in head
        assert max(map(len, src)) <= 100


# ---- SHA-256 / SHA-512 ----

@pytest.mark.parametrize("build", ["strict", "asan"])
def test_sha_lengths_0_to_300(hosts: dict[str, Path], build: str) -> None:
    rng = random.Random(256)
    data = [rng.randbytes(n) for n in range(301)]
    cases = [ch.sha(bits, d) for bits in (256, 512) for d in data]
    got = [r.value for r in ch.run_host(hosts[build], cases)]
    want = [hashlib.sha256(d).digest() for d in data] + [hashlib.sha512(d).digest()
                                                         for d in data]
    assert got == want


def test_sha_megabytes(hosts: dict[str, Path]) -> None:
    """3 MB streamed through 997-byte updates, and 1 MB in one call."""
    rng = random.Random(3)
    big, one = rng.randbytes(3 << 20), rng.randbytes(1 << 20)
    cases = [ch.sha_stream(256, big), ch.sha_stream(512, big), ch.sha(256, one),
             ch.sha(512, one)]
    got = [r.value for r in ch.run_host(hosts["strict"], cases)]
    assert got == [hashlib.sha256(big).digest(), hashlib.sha512(big).digest(),
                   hashlib.sha256(one).digest(), hashlib.sha512(one).digest()]


@pytest.mark.parametrize("build", ["strict", "asan"])
def test_sha_incremental_every_split(hosts: dict[str, Path], build: str) -> None:
    """A 300-byte message split in two at every position, in three at many, byte by byte
    at the start, and with empty updates: always the one-shot digest."""
    msg = random.Random(7).randbytes(300)
    n = len(msg)
    splits = [[i, n - i] for i in range(n + 1)]
    splits += [[i, j - i, n - j] for i in range(0, n + 1, 7) for j in range(i, n + 1, 13)]
    splits += [[1] * 62 + [n - 62], [0, 5, 0, 59, 0, 0, 64, 128, 0, 44], [55, 1, 8, 64, 172]]
    cases = [ch.sha_pieces(bits, msg, s) for bits in (256, 512) for s in splits]
    got = [r.value for r in ch.run_host(hosts[build], cases)]
    assert got == [hashlib.sha256(msg).digest()] * len(splits) + [
        hashlib.sha512(msg).digest()] * len(splits)


# ---- the arithmetic, white-box ----

FIELD_DRIVER = r"""
#include "kml_ed25519.c" /* the static functions under test */
#include "kml_sha256.h"
#include <stdio.h>

static void put(const kml_fe a)
{
    kml_fe c;
    kml_fe_canon(c, a);
    fwrite(c, 4, 8, stdout);
}

int main(void)
{
    uint32_t in[16];
    uint8_t head[96], digest[64];
    int32_t ok;
    /* first: NULL data with n = 0, which the API allows (UBSan would flag a memcpy from
     * NULL or arithmetic on it) */
    if (fread(head, 1, 96, stdin) != 96) {
        return 1;
    }
    kml_sha256(NULL, 0, digest);
    fwrite(digest, 1, 32, stdout);
    kml_sha512(NULL, 0, digest);
    fwrite(digest, 1, 64, stdout);
    ok = kml_ed25519_verify(head, NULL, 0, head + 64);
    fwrite(&ok, 4, 1, stdout);
    while (fread(in, 4, 16, stdin) == 16) {
        kml_fe a, b, r;
        uint8_t h[64];
        uint32_t k[8], z;
        memcpy(a, in, 32);
        memcpy(b, in + 8, 32);
        kml_fe_add(r, a, b);
        put(r);
        kml_fe_sub(r, a, b);
        put(r);
        kml_fe_mul(r, a, b);
        put(r);
        memcpy(r, a, 32);
        kml_fe_mul(r, r, b); /* aliased */
        put(r);
        kml_fe_sq(r, a);
        put(r);
        kml_fe_invert(r, a);
        put(r);
        kml_fe_pow2523(r, a);
        put(r);
        kml_fe_neg(r, a);
        put(r);
        z = (uint32_t)kml_fe_is_zero(a);
        fwrite(&z, 4, 1, stdout);
        memcpy(h, in, 64);
        kml_sc_reduce512(k, h);
        fwrite(k, 4, 8, stdout);
        z = (uint32_t)kml_sc_below_l(a);
        fwrite(&z, 4, 1, stdout);
    }
    return 0;
}
"""


def edge_values() -> list[int]:
    """Values around every carry and reduction boundary of the 8 x 32-bit words."""
    vals = {0, 1, 2, 18, 19, 37, 38, 39, 76, P - 1, P, P + 1, P + 18, P + 19, P + 37,
            2**255 - 1, 2**255, 2**255 + 18, 2**255 + 19, 2 * P - 1, 2 * P, 2 * P + 1,
            2 * P + 37, 2**256 - 1, 2**256 - 2, 2**256 - 37, 2**256 - 38, 2**256 - 39,
            L - 1, L, L + 1, 2**253 - 1, SQRT_M1, D}
    vals |= {2**k - 1 for k in range(32, 256, 32)} | {2**k for k in range(32, 256, 32)}
    return sorted(vals)


@pytest.mark.parametrize("build", ["strict", "asan"])
def test_field_and_scalar_edges(build: str, tmp_path: Path) -> None:
    """add / sub / mul / square / invert / pow((p-5)/8) / negate / is-zero mod p and the
    reduction mod L on every pair of edge values (all below 2^256, as the field code holds
    them) and on random ones, against Python integers; first, NULL data of length 0."""
    (tmp_path / "field.c").write_text(FIELD_DRIVER)
    exe = tmp_path / "field"
    subprocess.run(["gcc", *STRICT_CFLAGS, "-O2", *(ch.SANITIZE_FLAGS if build == "asan"
                                                    else []),
                    f"-I{RUNTIME_DIR}", str(tmp_path / "field.c"),
                    str(RUNTIME_DIR / "kml_sha256.c"), str(RUNTIME_DIR / "kml_sha512.c"), "-o",
                    str(exe)], check=True)
    rng = random.Random(25519)
    edges = edge_values()
    pairs = [(a, b) for a in edges for b in edges]
    pairs += [(rng.getrandbits(256), rng.getrandbits(256)) for _ in range(2000)]
    pairs += [(rng.choice(edges) ^ rng.getrandbits(8), 2**256 - 1 - rng.getrandbits(16))
              for _ in range(500)]
    sig, _, key = rfc_cases()[0]  # RFC 8032 TEST 1: the empty message
    payload = sig + key + b"".join(a.to_bytes(32, "little") + b.to_bytes(32, "little")
                                   for a, b in pairs)
    out = subprocess.run([str(exe)], input=payload, capture_output=True, check=True).stdout
    assert out[:96] == hashlib.sha256().digest() + hashlib.sha512().digest()
    assert struct.unpack_from("<i", out, 96)[0] == 1
    out = out[100:]
    row = 8 * 32 + 4 + 32 + 4
    assert len(out) == row * len(pairs)
    for i, (a, b) in enumerate(pairs):
        r = out[i * row:(i + 1) * row]
        fe = [int.from_bytes(r[32 * j:32 * j + 32], "little") for j in range(8)]
        want = [(a + b) % P, (a - b) % P, a * b % P, a * b % P, a * a % P, pow(a, P - 2, P),
                pow(a, (P - 5) // 8, P), -a % P]
        assert fe == want, (hex(a), hex(b))
        assert struct.unpack_from("<I", r, 256)[0] == (a % P == 0)
        assert int.from_bytes(r[260:292], "little") == (a + (b << 256)) % L
        assert struct.unpack_from("<I", r, 292)[0] == (a < L)


# ---- Ed25519 ----

def test_rfc8032_vectors(hosts: dict[str, Path]) -> None:
    vectors = rfc_cases()
    for build in ("strict", "asan"):
        assert verify_all(hosts[build], vectors) == [1] * len(vectors)
    # each vector with one bit of R, S, the message and the key flipped
    bad = []
    for s, m, k in vectors:
        bad += [(flip(s, 5), m, k), (flip(s, 300), m, k), (s, flip(m, 0) if m else b"\0", k),
                (s, m, flip(k, 77))]
    assert verify_all(hosts["strict"], bad) == [0] * len(bad)
    assert [openssl(*c) for c in bad] == [0] * len(bad)


def test_random_signatures_and_one_bit_corruptions(hosts: dict[str, Path]) -> None:
    """500 keys and messages (0..300 bytes, a 4 KB one every 50) signed by OpenSSL: all
    accepted; each with one random bit of R, of S, of the message and of the key flipped:
    all rejected, as OpenSSL rejects them."""
    good = random_signatures(500, seed=500)
    rng = random.Random(1)
    good[::50] = [(k.sign(m), m, raw_public(k)) for k, m in
                  ((private_key(rng), rng.randbytes(4096)) for _ in range(10))]
    for build in ("strict", "asan"):
        assert verify_all(hosts[build], good) == [1] * len(good)
    bad = []
    for s, m, k in good:
        bad.append((flip(s, rng.randrange(256)), m, k))
        bad.append((flip(s, 256 + rng.randrange(256)), m, k))
        bad.append((s, flip(m, rng.randrange(8 * len(m))) if m else b"\x80", k))
        bad.append((s, m, flip(k, rng.randrange(256))))
    decided = [openssl(*c) for c in bad]
    assert decided == [0] * len(bad)
    assert verify_all(hosts["strict"], bad) == decided
    assert verify_all(hosts["asan"], bad[::4]) == decided[::4]


def test_every_bit_flipped(hosts: dict[str, Path]) -> None:
    """Three signatures with each single bit of the signature, the key and the message
    flipped in turn (2,176 corruptions): every one rejected, as by OpenSSL."""
    bad = []
    for s, m, k in random_signatures(3, seed=3, max_len=40)[:3]:
        m = m or b"update"
        bad += [(flip(s, i), m, k) for i in range(512)]
        bad += [(s, m, flip(k, i)) for i in range(256)]
        bad += [(s, flip(m, i), k) for i in range(8 * len(m))]
    decided = [openssl(*c) for c in bad]
    assert verify_all(hosts["strict"], bad) == decided == [0] * len(bad)


OTHER_BUILDS = {
    "gcc -O0": ("gcc", "-O0", None),
    "gcc -O3": ("gcc", "-O3", None),
    "clang -O2": ("clang", "-O2", None),
    "clang -Os": ("clang", "-Os", None),
    "g++ -O2 (C++)": ("g++", "-O2", ["-x", "c++", "-std=c++11", *WARNINGS]),
}


@pytest.mark.parametrize("build", sorted(OTHER_BUILDS))
def test_other_compilers_decide_the_same(build: str, tmp_path: Path) -> None:
    """gcc at -O0 and -O3, clang, and the whole harness as C++: the RFC vectors, 100 random
    signatures and their corruptions, and the edge cases, decided as OpenSSL decides."""
    cc, opt, base = OTHER_BUILDS[build]
    exe = ch.build_host(tmp_path, cc=cc, optimize=opt, base=base)
    triples = rfc_cases() + random_signatures(100, seed=100)
    triples += [(flip(s, i * 37 % 512), m, k) for i, (s, m, k) in enumerate(triples)]
    triples += [(s, m, k) for _, s, m, k in edge_cases()]
    assert verify_all(exe, triples) == [openssl(*t) for t in triples]
    data = random.Random(0).randbytes(300)
    cases = [ch.sha(bits, data[:n]) for bits in (256, 512) for n in range(0, 301, 11)]
    assert [r.value for r in ch.run_host(exe, cases)] == [
        hashlib.new(f"sha{bits}", data[:n]).digest() for bits in (256, 512)
        for n in range(0, 301, 11)]


def small_order_key_cases(key: bytes, message: bytes) -> list[tuple[str, bytes, bytes, bytes]]:
    """For a key that decodes to a point A of small order: R = [S]B for the first S whose
    k = H(R || key || M) has [k]A = identity (the cofactorless equation holds) and for one
    where it does not."""
    a = decode(key)
    assert a is not None and order(a) is not None
    holds = fails = None
    for s in range(1, 400):
        r = encode(point_mul(s, BASE))
        ok = point_eq(point_mul(challenge(r, key, message), a), IDENTITY)
        if ok and holds is None:
            holds = signature(r, s)
        if not ok and fails is None:
            fails = signature(r, s)
        if holds and (fails or order(a) == 1):
            break
    out = [("small-order key, equation holds", holds, message, key)]
    if fails is not None:
        out.append(("small-order key, equation fails", fails, message, key))
    return out


@functools.cache
def edge_cases() -> list[tuple[str, bytes, bytes, bytes]]:
    """(what, signature, message, key), each decided by OpenSSL in the test."""
    msg = b"kiloml update"
    rng = random.Random(17)
    cases: list[tuple[str, bytes, bytes, bytes]] = []
    # every small-order key, canonical, with the sign bit set and (y = 0, 1) non-canonical
    small_keys = [encode(t) for t in TORSION]
    small_keys += [with_sign_bit(encode(t)) for t in TORSION]
    small_keys += [noncanonical(0), noncanonical(0, 1), noncanonical(1), noncanonical(1, 1)]
    for key in small_keys:
        cases += small_order_key_cases(key, msg)
    # the all-zero key (y = 0: a point of order 4) and the all-zero signature
    zero_key = bytes(32)
    cases += [("all-zero key, signature of another key", random_signatures(1, 9)[0][0], msg,
               zero_key),
              ("all-zero signature and key", bytes(64), msg, zero_key),
              ("all-zero signature and key, empty message", bytes(64), b"", zero_key),
              ("all-zero signature, identity key", bytes(64), msg, encode(IDENTITY))]
    # small-order R, S = 0, small-order key: accepted when R = -[k]A
    for t_key in TORSION[1:]:
        key = encode(t_key)
        for t_r in TORSION:
            r = encode(t_r)
            holds = point_eq(point_neg(point_mul(challenge(r, key, msg), t_key)), t_r)
            cases.append((f"small-order R and key, S = 0, equation {'holds' if holds else 'fails'}",
                          signature(r, 0), msg, key))
    # small-order R on a genuine key, and a genuine R plus a small-order point (a
    # cofactored verify would accept those whose k kills the torsion)
    k = private_key(rng)
    good = k.sign(msg)
    for i, t in enumerate(TORSION):
        cases.append(("small-order R, genuine key", signature(encode(t), 0), msg, raw_public(k)))
        shifted = encode(point_add(decode(good[:32]), t))
        cases.append(("R + small-order point, genuine key" if i else "genuine signature", shifted
                      + good[32:], msg, raw_public(k)))
    # a genuine key plus a small-order point (mixed order): [S]B = R + [k]A' needs [k]T = 0
    seed = rng.randbytes(32)
    a = secret_scalar(seed)
    a_point = point_mul(a, BASE)
    for t in TORSION[1:]:
        key = encode(point_add(a_point, t))
        wanted = {True: None, False: None}
        for nonce in range(1, 200):
            r = encode(point_mul(nonce, BASE))
            c = challenge(r, key, msg)
            holds = point_eq(point_mul(c, t), IDENTITY)
            if wanted[holds] is None:
                wanted[holds] = signature(r, (nonce + c * a) % L)
            if all(wanted.values()):
                break
        for holds, sig in wanted.items():
            if sig is not None:
                cases.append((f"mixed-order key, [k]T = 0 {holds}", sig, msg, key))
    # non-canonical R: the point the equation gives, encoded with y + p or with the sign bit
    # on x = 0 (a verify comparing points, not bytes, would accept these)
    for key_point in TORSION:
        key = encode(key_point)
        for r in (noncanonical(0), noncanonical(0, 1), noncanonical(1), noncanonical(1, 1),
                  with_sign_bit(encode(IDENTITY)), with_sign_bit(encode(TORSION[4]))):
            rp = decode(r)
            holds = point_eq(point_neg(point_mul(challenge(r, key, msg), key_point)), rp)
            cases.append((f"non-canonical R, S = 0, points equal {holds}", signature(r, 0), msg,
                          key))
    # S at and around L (identity key: [S]B = R decides alone)
    ident = encode(IDENTITY)
    for s in (0, 1, L - 1, L, L + 1, L + 2**200, 2**253 - 1, 2**253, 2**255, 2**256 - 1):
        cases.append((f"S = {s:#x}", signature(encode(point_mul(s % L, BASE)), s), msg, ident))
    good_s = int.from_bytes(good[32:], "little")
    for s in (good_s + L, good_s + 2 * L, good_s + 15 * L):
        if s < 2**256:
            cases.append(("genuine R, S + nL", signature(good[:32], s), msg, raw_public(k)))
    # keys off the curve, and with y >= p that decode (to points of unknown discrete log,
    # so no valid signature exists to make: the equation must fail)
    for y in range(2, 19):
        for sign in (0, 1):
            cases.append((f"key y = p + {y}", good, msg, noncanonical(y, sign)))
    for y in (2, 3, 5, 7, 2**255 - 20):
        cases.append((f"key y = {y}", good, msg, y.to_bytes(32, "little")))
    cases.append(("all-ones key", good, msg, b"\xff" * 32))
    # random bytes for everything (most keys do not decode)
    for _ in range(200):
        cases.append(("random", rng.randbytes(64), rng.randbytes(rng.randrange(50)),
                      rng.randbytes(32)))
    return cases


def test_edge_cases_decided_as_openssl(hosts: dict[str, Path]) -> None:
    """Small-order keys and R (all 8 points, canonical, with the sign bit on x = 0, with
    y >= p), mixed-order keys, the all-zero key and signature, non-canonical R, S around
    L and its multiples, keys off the curve or with y >= p, random bytes: kml decides each
    as OpenSSL does; both outcomes occur where they can (so no class passes vacuously)."""
    cases = edge_cases()
    decided = [openssl(s, m, k) for _, s, m, k in cases]
    for build in ("strict", "asan"):
        got = verify_all(hosts[build], [(s, m, k) for _, s, m, k in cases])
        wrong = [(what, k.hex()) for (what, _, _, k), a, b in zip(cases, got, decided, strict=True)
                 if a != b]
        assert not wrong, wrong
    by_kind: dict[str, set[int]] = {}
    for (what, *_), d in zip(cases, decided, strict=True):
        by_kind.setdefault(what.split(",")[0], set()).add(d)
    # OpenSSL's rules, as the header documents them: the cofactorless equation decides
    # small-order and mixed-order keys (both outcomes occur); S >= L and non-canonical R
    # are always refused
    assert by_kind["small-order key"] == {0, 1}
    assert by_kind["mixed-order key"] == {0, 1}
    assert by_kind["small-order R and key"] == {0, 1}
    assert by_kind["non-canonical R"] == {0}
    assert by_kind["R + small-order point"] == {0}
    assert by_kind["genuine signature"] == {1} and by_kind["genuine R"] == {0}
    assert by_kind["small-order R"] == {0}
    assert [d for (what, *_), d in zip(cases, decided, strict=True)
            if what.startswith("S = ")] == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    # refused for the encoding alone: the point the equation gives, written non-canonically
    assert any(what.endswith("points equal True") for what, *_ in cases)
    assert by_kind["random"] == {0}


# ---- the Cortex-M4F on QEMU ----

# instructions (deterministic for these inputs; the bound leaves a margin for compiler
# versions): one verify <= VERIFY_BASE + per byte of message, SHA-256 per 64-byte block
VERIFY_BASE = 3_700_000
VERIFY_PER_BYTE = 125
SHA256_PER_BLOCK = 4_600
VERIFY_STACK = 1_280
SHA_STACK = 640


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="no qemu-system-arm")
def test_qemu_cortex_m4f_matches_host(hosts: dict[str, Path], tmp_path: Path) -> None:
    """The RFC vectors, 20 random signatures, a share of the edge cases and corruptions, and
    SHA-256 / SHA-512 of some lengths on mps2-an386 (Cortex-M4F, -O2): the host's answers;
    instructions and stack within bounds."""
    q = ch.build_qemu(tmp_path / "m4f")
    rng = random.Random(20)
    triples = rfc_cases() + random_signatures(20, seed=20)
    edges = [(s, m, k) for what, s, m, k in edge_cases() if what != "random"][::6]
    s, m, k = triples[5]
    triples += [*edges, (flip(s, 3), m, k), (flip(s, 400), m, k), (s, m + b"!", k),
                (s, m, flip(k, 9))]
    big = rng.randbytes(16384)
    lengths = [0, 1, 55, 56, 63, 64, 111, 112, 127, 128, 1000, 1024, 16384]
    cases = [ch.verify(s, m, k) for s, m, k in triples]
    cases += [ch.sha(bits, big[:n]) for bits in (256, 512) for n in lengths]
    cases.append(ch.sha_pieces(256, big[:300], [7, 0, 100, 64, 129]))
    on_host = ch.run_host(hosts["strict"], cases)
    on_m4f, instructions = ch.run_qemu(q, cases, tmp_path / "run")
    assert [r.value for r in on_m4f] == [r.value for r in on_host]
    assert [r.value for r in on_m4f[:len(triples)]] == [openssl(*t) for t in triples]
    for c, r, n in zip(cases, on_m4f, instructions, strict=True):
        if c.op == ch.VERIFY:
            assert r.stack_bytes <= VERIFY_STACK
            if r.value == 1:  # a rejection may stop early (S >= L, a key off the curve)
                assert n <= VERIFY_BASE + VERIFY_PER_BYTE * (len(c.payload) - 96)
        elif c.op == ch.SHA256:
            assert r.stack_bytes <= SHA_STACK
            assert n <= SHA256_PER_BLOCK * ((len(c.payload) + 8) // 64 + 1)
        else:
            assert r.stack_bytes <= SHA_STACK
