"""Ed25519 keys for parameter blobs: the user's private key (signing, ``kiloml release``)
and the public key an updatable library trusts (``[library] update_key``). Read with the
``cryptography`` package; every fault is one KilomlError naming the file."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from kiloml.display import shown_path
from kiloml.errors import KilomlError
from kiloml.optional import needs

MAX_KEY_FILE_BYTES = 64 * 1024


def _serialization(what: str) -> ModuleType:
    with needs("cryptography", what):  # one line naming kiloml[sign] when it is missing
        from cryptography.hazmat.primitives import serialization
    return serialization


def _read(path: Path, where: str) -> bytes:
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise KilomlError(f"{where} {shown_path(path)} is larger than a key file "
                              f"({MAX_KEY_FILE_BYTES // 1024} KiB)")
        return path.read_bytes()
    except OSError as exc:
        raise KilomlError(f"{where} {shown_path(path)} cannot be read: "
                          f"{exc.strerror or exc}") from None


def load_private_key(path: Path, where: str = "signing key"):  # -> Ed25519PrivateKey
    """An unencrypted Ed25519 private key (PEM or DER PKCS#8, or OpenSSH PEM)."""
    serialization = _serialization("signing a blob")
    with needs("cryptography", "signing a blob"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read(path, where)
    loaders = [serialization.load_pem_private_key, serialization.load_der_private_key,
               serialization.load_ssh_private_key]
    for loader in loaders:
        try:
            key = loader(data, password=None)
        except Exception:
            continue
        if not isinstance(key, Ed25519PrivateKey):
            kind = type(key).__name__.lstrip("_").replace("PrivateKey", "")
            raise KilomlError(f"{where} {shown_path(path)} is not an Ed25519 private key "
                              f"(it holds an {kind} key)")
        return key
    raise KilomlError(f"{where} {shown_path(path)} is not an unencrypted Ed25519 private "
                      "key (PEM or DER PKCS#8, or OpenSSH; make one with `openssl genpkey "
                      "-algorithm ed25519 -out key.pem`)")


def public_key_bytes(path: Path, where: str = "[library] update_key") -> bytes:
    """The 32 raw bytes of an Ed25519 public key file (PEM or DER SubjectPublicKeyInfo;
    a private key file gives its public half)."""
    serialization = _serialization(where)
    with needs("cryptography", where):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )

    data = _read(path, where)
    key = None
    for loader in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            key = loader(data)
            break
        except Exception:
            continue
    if key is None:
        try:
            private = load_private_key(path, where)
        except KilomlError:
            private = None
        key = private.public_key() if isinstance(private, Ed25519PrivateKey) else None
    if not isinstance(key, Ed25519PublicKey):
        raise KilomlError(f"{where} {shown_path(path)} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(key, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message``."""
    return key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    with needs("cryptography", "checking a blob's signature"):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True
