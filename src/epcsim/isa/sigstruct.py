"""SIGSTRUCT (SDM §37.14), without RSA.

The model does not do RSA-3072: the "signature" is a SHA-256 of the signed body keyed by the
signer's 384-byte modulus, so any change to a signed field gives SGX_INVALID_SIGNATURE and
MRSIGNER is SHA-256(modulus) as on real hardware.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from epcsim.arch import SGX_MODULUS_SIZE


@dataclass
class Sigstruct:
    enclave_hash: bytes
    attributes: int
    attribute_mask: int
    modulus: bytes
    signature: bytes = b""
    xfrm: int = 3
    xfrm_mask: int = 0
    miscselect: int = 0
    miscmask: int = 0
    vendor: int = 0
    isv_prod_id: int = 0
    isv_svn: int = 0

    def body(self) -> bytes:
        return (
            struct.pack(
                "<IIQQQQIIHH",
                self.vendor,
                0,
                self.attributes,
                self.attribute_mask,
                self.xfrm,
                self.xfrm_mask,
                self.miscselect,
                self.miscmask,
                self.isv_prod_id,
                self.isv_svn,
            )
            + self.enclave_hash
        )

    def expected_signature(self) -> bytes:
        return hashlib.sha256(self.modulus + self.body()).digest()

    @property
    def mrsigner(self) -> bytes:
        return hashlib.sha256(self.modulus).digest()

    @classmethod
    def sign(
        cls,
        mrenclave: bytes,
        key_modulus: bytes,
        *,
        attributes: int = 0,
        attribute_mask: int = 0,
        **fields,
    ) -> Sigstruct:
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
