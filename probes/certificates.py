"""Certificate facts shared by the http and tls probes."""

from __future__ import annotations

from cryptography import x509


def expiry_ms_from_der(der: bytes) -> int:
    """Epoch milliseconds at which the certificate stops being valid."""
    certificate = x509.load_der_x509_certificate(der)
    return int(certificate.not_valid_after_utc.timestamp() * 1000)
