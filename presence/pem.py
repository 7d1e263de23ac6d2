"""PEM: an identity provider's public key, as ``PRESENCE_JWT_PUBLIC_KEY`` gives it, and the one
algorithm a token signed with it may use (never the token's own ``alg`` header)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
MIN_RSA_BITS = 2048
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


class BadKey(ValueError):
    """What is wrong with the configured key (the settings report it)."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """What ``jwt.decode`` is given: the key and the only algorithms it may be used with."""

    key: Any  # the HS256 secret (str) or a public key object of ``cryptography``
    algorithms: tuple[str, ...]


def load_public_key(text: str) -> VerificationKey:
    """A PEM public key or certificate (or the path of a file holding one) and its algorithm.
    Raises ``BadKey`` saying what is wrong with it."""
    text = text.strip().replace("\\n", "\n")  # one-line env vars often carry escaped newlines
    if not text.startswith("-----BEGIN"):
        try:
            with open(text, encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadKey(
                f"PRESENCE_JWT_PUBLIC_KEY must be a PEM public key ('-----BEGIN PUBLIC KEY-----...') or the path "
                f"of a file holding one; reading {text[:80]!r} failed: {exc}"
            ) from None
    if "PRIVATE KEY-----" in text:
        raise BadKey("PRESENCE_JWT_PUBLIC_KEY holds a private key: give the server the public key only")
    try:
        if text.startswith("-----BEGIN CERTIFICATE-----"):
            public: Any = x509.load_pem_x509_certificate(text.encode()).public_key()
        else:
            public = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise BadKey(f"PRESENCE_JWT_PUBLIC_KEY is not a readable PEM public key or certificate: {exc}") from None
    algorithms = key_algorithms(public, "PRESENCE_JWT_PUBLIC_KEY")
    return VerificationKey(public, algorithms[:1])  # RSA: RS256, as docs/guide.md says


def key_algorithms(public: Any, source: str) -> tuple[str, ...]:
    """The algorithms a public key may verify, whether it comes from a PEM or a key set (one rule
    for both): RSA of 2048 bits or more (RS*/PS*), EC P-256/P-384/P-521 (the one ES* of its
    curve), Ed25519 (EdDSA). Raises ``BadKey`` for anything else, naming ``source``."""
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise BadKey(f"{source}: an RSA key of {public.key_size} bits is too weak ({MIN_RSA_BITS}+)")
        return RSA_ALGORITHMS
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _CURVES:
        return (_CURVES[public.curve.name],)
    if isinstance(public, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    raise BadKey(
        f"{source} must be an RSA (RS256; PS256 and others in a key set), EC P-256/P-384/P-521 "
        f"(ES256/384/512) or Ed25519 (EdDSA) public key, not {type(public).__name__}"
    )
