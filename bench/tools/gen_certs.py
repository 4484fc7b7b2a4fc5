#!/usr/bin/env python3
"""Fast certificate generator for the benchmarks: one throwaway CA and N leaf certificates.

Every leaf has its own ECDSA P-256 key and is signed by the CA (ECDSA P-256, SHA-256), with the
name as CN and DNS SAN, serverAuth, SKI and AKI, valid for 90 days. Output follows acmedge's
storage layout:

    OUT/<name>/cert.pem   leaf + CA
    OUT/<name>/key.pem    PKCS#8, mode 0600

and CA_DIR/ca.pem, CA_DIR/ca.key. Names are PREFIX-00001.DOMAIN ... (zero-padded to 5 digits);
the list is written to NAMES_FILE, one per line. Needs python3-cryptography (Debian package).
certtool takes ~10 ms per leaf; this takes well under 1 ms.

Usage: gen_certs.py --count N --out OUT --ca-dir CA_DIR --names-file FILE
                    [--prefix mem] [--domain example.test]
"""

import argparse
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_ca(ca_dir, now):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acmedge bench CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(ca_dir, exist_ok=True)
    ca_pem = cert.public_bytes(serialization.Encoding.PEM)
    write(os.path.join(ca_dir, "ca.pem"), ca_pem)
    write(
        os.path.join(ca_dir, "ca.key"),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    return key, cert, ca_pem, ski


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ca-dir", required=True)
    ap.add_argument("--names-file", required=True)
    ap.add_argument("--prefix", default="mem")
    ap.add_argument("--domain", default="example.test")
    args = ap.parse_args()
    if args.count < 0 or args.count > 99999:
        sys.exit("gen_certs.py: --count must be 0..99999")

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert, ca_pem, ca_ski = make_ca(args.ca_dir, now)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    ku = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    os.makedirs(args.out, exist_ok=True)
    names = []
    for i in range(1, args.count + 1):
        name = "%s-%05d.%s" % (args.prefix, i, args.domain)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(ku, critical=True)
            .add_extension(eku, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        write(os.path.join(d, "cert.pem"), cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
        write(
            os.path.join(d, "key.pem"),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            0o600,
        )
        names.append(name)
    with open(args.names_file, "w") as f:
        for n in names:
            f.write(n + "\n")


if __name__ == "__main__":
    main()
