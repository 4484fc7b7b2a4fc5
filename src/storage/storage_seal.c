/* Private keys at rest in a shared store: AES-256-GCM (GnuTLS) with the storage location as
 * associated data, so a ciphertext copied under another name, field or version does not open.
 * Format: "aeenc1:" base64url(key id (1) | nonce (12) | ciphertext | tag (16)). */
#include "storage_seal.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "acmedge/crypto.h"

#define SEAL_TAG "aeenc1:"
#define SEAL_NONCE 12
#define SEAL_TAGLEN 16
#define SEAL_KEY_ID 1

int ae_seal_is_sealed(const char *value, size_t len) {
  return len >= strlen(SEAL_TAG) && memcmp(value, SEAL_TAG, strlen(SEAL_TAG)) == 0;
}

static int cipher(const unsigned char key[32], gnutls_aead_cipher_hd_t *h) {
  gnutls_datum_t k = {.data = (unsigned char *)key, .size = 32};
  return gnutls_aead_cipher_init(h, GNUTLS_CIPHER_AES_256_GCM, &k) == 0 ? 0 : AE_ERR;
}

int ae_seal(const unsigned char key[32], const char *ad, const void *plain, size_t len, char **out, ae_err *err) {
  size_t blen = 1 + SEAL_NONCE + len + SEAL_TAGLEN;
  uint8_t *buf = malloc(blen);
  if (!buf)
    return ae_err_set(err, AE_ENOMEM, "out of memory sealing a key");
  buf[0] = SEAL_KEY_ID;
  gnutls_aead_cipher_hd_t h = NULL;
  size_t ctlen = len + SEAL_TAGLEN;
  int r = AE_ERR;
  if (gnutls_rnd(GNUTLS_RND_NONCE, buf + 1, SEAL_NONCE) != 0 || cipher(key, &h) != 0 ||
      gnutls_aead_cipher_encrypt(h, buf + 1, SEAL_NONCE, ad, strlen(ad), SEAL_TAGLEN, plain, len, buf + 1 + SEAL_NONCE,
                                 &ctlen) != 0) {
    ae_err_set(err, AE_ERR, "cannot encrypt a private key for %s", ad);
    goto out;
  }
  char *b64 = NULL;
  if (ae_b64url_encode(buf, 1 + SEAL_NONCE + ctlen, &b64) != 0) {
    ae_err_set(err, AE_ENOMEM, "out of memory sealing a key");
    goto out;
  }
  size_t olen = strlen(SEAL_TAG) + strlen(b64);
  *out = malloc(olen + 1);
  if (!*out) {
    free(b64);
    ae_err_set(err, AE_ENOMEM, "out of memory sealing a key");
    goto out;
  }
  memcpy(*out, SEAL_TAG, strlen(SEAL_TAG));
  memcpy(*out + strlen(SEAL_TAG), b64, strlen(b64) + 1);
  free(b64);
  r = 0;
out:
  if (h)
    gnutls_aead_cipher_deinit(h);
  free(buf);
  return r;
}

int ae_unseal(const unsigned char key[32], const char *ad, const char *value, size_t len, char **out, size_t *outlen,
              ae_err *err) {
  if (!ae_seal_is_sealed(value, len))
    return ae_err_set(err, AE_EPROTO, "%s: not an encrypted value", ad);
  uint8_t *raw = NULL;
  size_t rlen = 0;
  if (ae_b64url_decode(value + strlen(SEAL_TAG), len - strlen(SEAL_TAG), &raw, &rlen) != 0)
    return ae_err_set(err, AE_EPROTO, "%s: encrypted value is not base64url", ad);
  int r = AE_EPROTO;
  gnutls_aead_cipher_hd_t h = NULL;
  if (rlen < 1 + SEAL_NONCE + SEAL_TAGLEN || raw[0] != SEAL_KEY_ID) {
    ae_err_set(err, AE_EPROTO, "%s: encrypted value is truncated or uses an unknown key id", ad);
    goto out;
  }
  size_t ctlen = rlen - 1 - SEAL_NONCE;
  size_t plen = ctlen - SEAL_TAGLEN;
  char *plain = malloc(plen + 1);
  if (!plain) {
    r = ae_err_set(err, AE_ENOMEM, "out of memory opening %s", ad);
    goto out;
  }
  size_t got = plen;
  if (cipher(key, &h) != 0 || gnutls_aead_cipher_decrypt(h, raw + 1, SEAL_NONCE, ad, strlen(ad), SEAL_TAGLEN,
                                                         raw + 1 + SEAL_NONCE, ctlen, plain, &got) != 0) {
    free(plain);
    ae_err_set(err, AE_EPROTO,
               "%s: private key does not decrypt (wrong key_file, or a value copied from another name or version)",
               ad);
    goto out;
  }
  plain[got] = '\0';
  *out = plain;
  *outlen = got;
  r = 0;
out:
  if (h)
    gnutls_aead_cipher_deinit(h);
  if (raw) {
    memset(raw, 0, rlen);
    free(raw);
  }
  return r;
}
