/* Compact private keys for cached certificates.
 *
 * A GnuTLS x509 private key keeps its parameters as bignums plus the whole ASN.1 tree it was
 * parsed from: about 2 KiB for an ECDSA P-256 key, more than half of what a cached name costs. An
 * ECDSA key needs only its secret scalar (32 bytes for P-256) to sign, so for P-256 and P-384 the
 * cert keeps the scalar and hands GnuTLS an external key (gnutls_privkey_import_ext4) whose sign
 * callback signs with nettle, the same library and the same side-channel-silent code GnuTLS itself
 * uses for ECDSA. Nothing is parsed per handshake: the scalar is copied into nettle's limb form
 * (a few dozen bytes) and signed. Other key types (RSA, Ed25519) keep the GnuTLS form. */
#include "certstore_int.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <nettle/bignum.h>
#include <nettle/dsa.h>
#include <nettle/ecc-curve.h>
#include <nettle/ecc.h>
#include <nettle/ecdsa.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/common.h"

#define SCALAR_MAX 48

typedef struct eckey {
  const struct ecc_curve *curve;
  gnutls_ecc_curve_t gcurve;
  unsigned len; /* bytes of the scalar: 32 or 48 */
  unsigned char k[SCALAR_MAX];
} eckey;

static void rnd(void *ctx, size_t n, uint8_t *dst) {
  (void)ctx;
  /* GnuTLS's key-grade generator, as GnuTLS uses for its own ECDSA nonces. */
  if (gnutls_rnd(GNUTLS_RND_KEY, dst, n) < 0)
    abort(); /* a signature with a predictable nonce would leak the key */
}

static int ec_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *ud, unsigned flags,
                        const gnutls_datum_t *hash, gnutls_datum_t *sig) {
  (void)key;
  (void)flags;
  const eckey *k = ud;
  if (gnutls_sign_get_pk_algorithm(algo) != GNUTLS_PK_ECDSA)
    return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
  struct ecc_scalar s;
  ecc_scalar_init(&s, k->curve);
  /* Big-endian bytes into little-endian limbs; the scalar was validated when it was imported. */
  size_t limbs = (size_t)ecc_size(k->curve);
  memset(s.p, 0, limbs * sizeof(mp_limb_t));
  for (unsigned i = 0; i < k->len; i++) {
    unsigned byte = k->len - 1 - i; /* i-th least significant byte */
    s.p[i / sizeof(mp_limb_t)] |= (mp_limb_t)k->k[byte] << (8 * (i % sizeof(mp_limb_t)));
  }
  struct dsa_signature ds;
  dsa_signature_init(&ds);
  ecdsa_sign(&s, NULL, rnd, hash->size, hash->data, &ds);
  memset(s.p, 0, limbs * sizeof(mp_limb_t));
  ecc_scalar_clear(&s);
  unsigned char rb[SCALAR_MAX + 1], sb[SCALAR_MAX + 1];
  size_t rl = nettle_mpz_sizeinbase_256_u(ds.r), sl = nettle_mpz_sizeinbase_256_u(ds.s);
  int g = GNUTLS_E_INTERNAL_ERROR;
  if (rl <= sizeof(rb) && sl <= sizeof(sb)) {
    nettle_mpz_get_str_256(rl, rb, ds.r);
    nettle_mpz_get_str_256(sl, sb, ds.s);
    gnutls_datum_t r = {rb, (unsigned)rl}, sd = {sb, (unsigned)sl};
    g = gnutls_encode_rs_value(sig, &r, &sd);
  }
  dsa_signature_clear(&ds);
  return g < 0 ? g : 0;
}

static int ec_info(gnutls_privkey_t key, unsigned flags, void *ud) {
  (void)key;
  const eckey *k = ud;
  if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
    return GNUTLS_PK_ECDSA;
  if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
    return (int)(k->len * 8);
  if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO) {
    gnutls_sign_algorithm_t a = GNUTLS_FLAGS_TO_SIGN_ALGO(flags);
    switch (a) {
    /* TLS 1.2 pairs any hash with an ECDSA key; TLS 1.3 ties each curve to one scheme. */
    case GNUTLS_SIGN_ECDSA_SHA1:
    case GNUTLS_SIGN_ECDSA_SHA224:
    case GNUTLS_SIGN_ECDSA_SHA256:
    case GNUTLS_SIGN_ECDSA_SHA384:
    case GNUTLS_SIGN_ECDSA_SHA512:
      return 1;
    case GNUTLS_SIGN_ECDSA_SECP256R1_SHA256:
      return k->gcurve == GNUTLS_ECC_CURVE_SECP256R1;
    case GNUTLS_SIGN_ECDSA_SECP384R1_SHA384:
      return k->gcurve == GNUTLS_ECC_CURVE_SECP384R1;
    default:
      return 0;
    }
  }
  return GNUTLS_E_UNKNOWN_PK_ALGORITHM;
}

static void ec_deinit(gnutls_privkey_t key, void *ud) {
  (void)key;
  eckey *k = ud;
  gnutls_memset(k->k, 0, sizeof(k->k));
  free(k);
}

int cs_key_compact(gnutls_ecc_curve_t curve, const gnutls_datum_t *k, gnutls_privkey_t *out, size_t *bytes) {
  const struct ecc_curve *nc = curve == GNUTLS_ECC_CURVE_SECP256R1   ? nettle_get_secp_256r1()
                               : curve == GNUTLS_ECC_CURVE_SECP384R1 ? nettle_get_secp_384r1()
                                                                     : NULL;
  unsigned len = curve == GNUTLS_ECC_CURVE_SECP256R1 ? 32 : 48;
  /* The exported integer may carry a leading zero byte (DER sign) or be shorter than the curve. */
  const unsigned char *d = k->data;
  size_t n = k->size;
  while (n > 0 && *d == 0) {
    d++;
    n--;
  }
  if (!nc || n == 0 || n > len)
    return 0;
  eckey *ek = ae_calloc(1, sizeof(*ek));
  ek->curve = nc;
  ek->gcurve = curve;
  ek->len = len;
  memcpy(ek->k + (len - n), d, n);
  gnutls_privkey_t pkey = NULL;
  if (gnutls_privkey_init(&pkey) >= 0 &&
      gnutls_privkey_import_ext4(pkey, ek, NULL, ec_sign_hash, NULL, ec_deinit, ec_info,
                                 GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE) >= 0) {
    *out = pkey;
    *bytes = CS_EXT_PRIVKEY_BYTES + ((sizeof(*ek) + 8 + 15) & ~(size_t)15);
    return 1;
  }
  if (pkey)
    gnutls_privkey_deinit(pkey);
  ec_deinit(NULL, ek);
  return 0;
}
