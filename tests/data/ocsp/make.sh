#!/usr/bin/env bash
# Regenerates the OCSP fixtures of tests/unit/ocsp/test_ocsp_verify.c with openssl: a CA, leaves,
# responder certificates and DER responses. The unit test derives "now" from each response's
# thisUpdate, so the files never go stale.
set -euo pipefail
cd "$(dirname "$0")"
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
days=36500
ext() { printf '%s\n' "$@" >"$D/ext.cnf"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/ca.key" -out ca.pem \
  -subj /CN=fixture-ca -days $days -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
mkleaf() { # name days serial
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/$1.key" -out "$D/$1.csr" -subj "/CN=$1" 2>/dev/null
  ext "subjectAltName=DNS:$1" "authorityInfoAccess=OCSP;URI:http://127.0.0.1:1/ocsp"
  openssl x509 -req -in "$D/$1.csr" -CA ca.pem -CAkey "$D/ca.key" -set_serial "$3" -days "$2" -extfile "$D/ext.cnf" -out "$1.pem" 2>/dev/null
}
mkleaf leaf.example $days 0x1001
mkleaf other.example $days 0x1002
mkleaf short.example 1 0x1003
# A delegated responder (id-kp-OCSPSigning) and one without that EKU, both issued by the CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/resp.key" -out "$D/resp.csr" -subj /CN=responder 2>/dev/null
ext "extendedKeyUsage=OCSPSigning"
openssl x509 -req -in "$D/resp.csr" -CA ca.pem -CAkey "$D/ca.key" -set_serial 0x2001 -days $days -extfile "$D/ext.cnf" -out "$D/resp.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/noeku.key" -out "$D/noeku.csr" -subj /CN=noeku 2>/dev/null
ext "extendedKeyUsage=serverAuth"
openssl x509 -req -in "$D/noeku.csr" -CA ca.pem -CAkey "$D/ca.key" -set_serial 0x2002 -days $days -extfile "$D/ext.cnf" -out "$D/noeku.pem" 2>/dev/null
# An unrelated self-signed key pretending to answer for the CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/rogue.key" -out "$D/rogue.pem" -subj /CN=fixture-ca -days $days 2>/dev/null

exp=$(date -u -d "+50 years" +%y%m%d%H%M%SZ 2>/dev/null || echo 761231000000Z)
rev=$(date -u +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t1001\tunknown\t/CN=leaf.example\n' "$exp" >"$D/index.txt"
printf 'V\t%s\t\t1002\tunknown\t/CN=other.example\n' "$exp" >>"$D/index.txt"
printf 'V\t%s\t\t1003\tunknown\t/CN=short.example\n' "$exp" >>"$D/index.txt"
printf 'R\t%s\t%s,keyCompromise\t1001\tunknown\t/CN=leaf.example\n' "$exp" "$rev" >"$D/index-revoked.txt"

answer() { # out index leaf rsigner rkey [extra...]
  local out=$1 idx=$2 leaf=$3 signer=$4 key=$5
  shift 5
  openssl ocsp -issuer ca.pem -cert "$leaf" -reqout "$D/req.der" >/dev/null 2>&1
  openssl ocsp -index "$idx" -rsigner "$signer" -rkey "$key" -CA ca.pem -reqin "$D/req.der" -respout "$out" "$@" >/dev/null 2>&1
}
answer good.der "$D/index.txt" leaf.example.pem ca.pem "$D/ca.key" -ndays 7
answer revoked.der "$D/index-revoked.txt" leaf.example.pem ca.pem "$D/ca.key" -ndays 7
answer unknown.der /dev/null leaf.example.pem ca.pem "$D/ca.key" -ndays 7
answer nonext.der "$D/index.txt" leaf.example.pem ca.pem "$D/ca.key"
answer other.der "$D/index.txt" other.example.pem ca.pem "$D/ca.key" -ndays 7
answer rogue.der "$D/index.txt" leaf.example.pem "$D/rogue.pem" "$D/rogue.key" -ndays 7
answer delegated.der "$D/index.txt" leaf.example.pem "$D/resp.pem" "$D/resp.key" -ndays 7
answer noeku.der "$D/index.txt" leaf.example.pem "$D/noeku.pem" "$D/noeku.key" -ndays 7
answer short.der "$D/index.txt" short.example.pem ca.pem "$D/ca.key" -ndays 7
ls -l *.der
