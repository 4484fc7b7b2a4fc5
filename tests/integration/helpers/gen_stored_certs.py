#!/usr/bin/env python3
"""Writes N certificates into acmedge's storage layout (design section 7) for scale tests and
benchmarks: certs/<ca-host>/<prefix><i>.<domain>/{cert.pem,key.pem}.

One throwaway CA signs every leaf and all leaves share ONE key (only the certificates differ),
which keeps generation to a signature per name. Each leaf gets a distinct random serial; the
file given with --serials receives "name serial" lines (serial as lowercase hex) for checks.

  gen_stored_certs.py --root STORAGE --ca-host HOST --count N [--prefix n] [--domain example.test]
                      [--serials FILE] [--due NAME]... [--link-key] [--jobs J]

--due NAME adds NAME with a validity already two thirds spent (renewal due at once).
--link-key writes the shared key once per 50,000 names (STORAGE/.shared-key-K.pem; ext4 allows
65,000 links to a file) and hard-links every key.pem to it: a million names then cost 20 key
files instead of a million (benchmarks).
--jobs J signs in J processes (names split by index; serial lines keep no particular order).
"""
import argparse
import datetime
import os
import secrets
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LINKS_PER_KEY = 50000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--ca-host", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--prefix", default="n")
    ap.add_argument("--domain", default="example.test")
    ap.add_argument("--serials")
    ap.add_argument("--due", action="append", default=[])
    ap.add_argument("--link-key", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()

    t0 = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acmedge scale test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    pub = leaf_key.public_key()
    base = os.path.join(a.root, "certs", a.ca_host)
    os.makedirs(base, mode=0o700, exist_ok=True)
    shared_keys = []
    if a.link_key:
        for k in range(a.count // LINKS_PER_KEY + 1):
            shared_keys.append(os.path.join(a.root, ".shared-key-%d.pem" % k))
            fd = os.open(shared_keys[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
    out = None

    def write(name, nb, na, idx):
        # 63-bit serial with the top bit set: 16 hex digits, no DER padding byte.
        serial = (1 << 62) | secrets.randbits(62)
        crt = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca_name).public_key(pub).serial_number(serial)
               .not_valid_before(nb).not_valid_after(na)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(ca_key, hashes.SHA256()))
        d = os.path.join(base, name)
        os.makedirs(d, mode=0o700, exist_ok=True)
        with open(os.path.join(d, "cert.pem"), "wb") as f:
            f.write(crt.public_bytes(serialization.Encoding.PEM) + ca_pem)
        kp = os.path.join(d, "key.pem")
        if shared_keys:
            if os.path.lexists(kp):
                os.unlink(kp)
            os.link(shared_keys[idx // LINKS_PER_KEY], kp)
        else:
            fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
        if out:
            out.write("%s %x\n" % (name, serial))

    jobs = max(1, a.jobs)
    kids = []
    for j in range(jobs):
        pid = os.fork() if jobs > 1 else 0
        if pid:
            kids.append(pid)
            continue
        # Children differ only in their share of the indices and in their serial file part.
        path = a.serials if jobs == 1 else "%s.part%d" % (a.serials, j)
        out = open(path, "w") if a.serials else None
        for i in range(j, a.count, jobs):
            write("%s%d.%s" % (a.prefix, i, a.domain), now - datetime.timedelta(hours=1), now + datetime.timedelta(days=90), i)
        if j == 0:
            for name in a.due:
                write(name, now - datetime.timedelta(days=80), now + datetime.timedelta(days=5), a.count)
        if out:
            out.close()
        if jobs > 1:
            os._exit(0)
    failed = 0
    for pid in kids:
        _, status = os.waitpid(pid, 0)
        failed |= status != 0
    if failed:
        print("a signing process failed", file=sys.stderr)
        sys.exit(1)
    if jobs > 1 and a.serials:
        with open(a.serials, "w") as dst:
            for j in range(jobs):
                part = "%s.part%d" % (a.serials, j)
                with open(part) as src:
                    dst.write(src.read())
                os.unlink(part)
    print("generated %d certificate(s) in %.1f s" % (a.count + len(a.due), time.monotonic() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
