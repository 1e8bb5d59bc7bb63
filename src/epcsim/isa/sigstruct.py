"""SIGSTRUCT (SDM §37.14), without RSA.

The model does not do RSA-3072: the "signature" is a SHA-256 of the signed body keyed by the
signer's 384-byte modulus, so any change to a signed field gives SGX_INVALID_SIGNATURE, and
MRSIGNER is SHA-256(modulus) as on real hardware. EINIT's other SIGSTRUCT checks are modelled:
VENDOR must be 0 or 0x8086 and the modulus 384 bytes (else SGX_INVALID_SIG_STRUCT); the
ATTRIBUTES/XFRM and MISCSELECT masks are compared with the SECS (SGX_INVALID_ATTRIBUTE).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from epcsim.arch import SGX_MODULUS_SIZE


@dataclass
class Sigstruct:
    enclave_hash: bytes = bytes(32)
    attributes: int = 0
    attribute_mask: int = 0
    xfrm: int = 3
    xfrm_mask: int = 0
    miscselect: int = 0
    miscmask: int = 0
    vendor: int = 0
    modulus: bytes = bytes(SGX_MODULUS_SIZE)
    signature: bytes = b""
    isv_prod_id: int = 0
    isv_svn: int = 0

    def body(self) -> bytes:
        """The signed fields, serialised (HEADER/BODY of the real structure)."""
        return struct.pack(
            "<IQQQQIIHH",
            self.vendor & 0xFFFFFFFF,
            self.attributes & (2**64 - 1),
            self.attribute_mask & (2**64 - 1),
            self.xfrm & (2**64 - 1),
            self.xfrm_mask & (2**64 - 1),
            self.miscselect & 0xFFFFFFFF,
            self.miscmask & 0xFFFFFFFF,
            self.isv_prod_id & 0xFFFF,
            self.isv_svn & 0xFFFF,
        ) + bytes(self.enclave_hash)

    def expected_signature(self) -> bytes:
        return hashlib.sha256(bytes(self.modulus) + self.body()).digest()

    def well_formed(self) -> bool:
        """EINIT's SIGSTRUCT header checks (SGX_INVALID_SIG_STRUCT otherwise)."""
        return (
            self.vendor in (0, 0x8086)
            and len(self.modulus) == SGX_MODULUS_SIZE
            and len(self.enclave_hash) == 32
        )

    @property
    def mrsigner(self) -> bytes:
        return hashlib.sha256(bytes(self.modulus)).digest()

    @classmethod
    def sign(
        cls,
        mrenclave: bytes,
        key_modulus: bytes,
        *,
        attributes: int = 0,
        attribute_mask: int = 0,
        **fields: Any,
    ) -> Sigstruct:
        """A SIGSTRUCT for ``mrenclave`` signed with the key whose modulus is given."""
        if len(key_modulus) != SGX_MODULUS_SIZE:
            raise ValueError(f"key_modulus: {SGX_MODULUS_SIZE} bytes, got {len(key_modulus)}")
        s = cls(
            enclave_hash=bytes(mrenclave),
            attributes=attributes,
            attribute_mask=attribute_mask,
            modulus=bytes(key_modulus),
            **fields,
        )
        s.signature = s.expected_signature()
        return s
