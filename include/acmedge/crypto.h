/* Keys, JWK/thumbprint (RFC 7638), JWS (RFC 7515, ES256/RS256, flattened JSON), EAB (HS256),
 * CSR and base64url — all on GnuTLS/nettle. */
#ifndef ACMEDGE_CRYPTO_H
#define ACMEDGE_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "acmedge/common.h"

typedef struct ae_key ae_key;

typedef enum { AE_KEY_ECDSA_P256 = 0, AE_KEY_RSA_2048 = 1 } ae_key_type;

/* Generates a new private key. Caller owns *out (ae_key_free). */
int ae_key_generate(ae_key_type type, ae_key **out, ae_err *err);
/* Imports a PEM private key (PKCS#8 or SEC1/PKCS#1). Caller owns *out. */
int ae_key_from_pem(const char *pem, size_t len, ae_key **out, ae_err *err);
/* Exports as PKCS#8 PEM (malloc'd, caller frees). */
int ae_key_to_pem(const ae_key *k, char **pem, ae_err *err);
/* Frees a key (NULL is fine). */
void ae_key_free(ae_key *k);
/* Key type. */
ae_key_type ae_key_get_type(const ae_key *k);
/* Public JWK object ({"crv","kty","x","y"} or {"e","kty","n"}); new reference, caller decrefs. */
json_t *ae_key_jwk(const ae_key *k);
/* RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)) into out (>= 44 bytes). */
int ae_key_thumbprint(const ae_key *k, char *out, size_t outlen);
/* RFC 7638 thumbprint of a public JWK object (EC or RSA; other members ignored) into out
 * (>= 44 bytes). */
int ae_jwk_thumbprint(json_t *jwk, char *out, size_t outlen);
/* Returns 1 when the PEM certificate's public key is this key's public key. */
int ae_key_matches_cert(const ae_key *k, const char *cert_pem, size_t len);
/* Underlying GnuTLS handles (owned by the key). */
void *ae_key_gnutls_privkey(const ae_key *k);      /* gnutls_privkey_t */
void *ae_key_gnutls_x509_privkey(const ae_key *k); /* gnutls_x509_privkey_t */

/* Flattened JWS over payload (NULL or "" => POST-as-GET empty payload) with protected header
 * {alg, nonce, url, jwk|kid}. kid NULL => embed jwk. *out is malloc'd JSON text, caller frees. */
int ae_jws_sign(const ae_key *k, const char *kid, const char *nonce, const char *url,
                const char *payload, char **out, ae_err *err);
/* External account binding JWS (RFC 8555 §7.3.4, HS256) binding account_jwk to kid;
 * hmac_key_b64url is the CA-provided key. *out is a new JSON object, caller decrefs. */
int ae_jws_eab(const char *kid, const char *hmac_key_b64url, json_t *account_jwk,
               const char *url, json_t **out, ae_err *err);
/* Key authorization "token.thumbprint" into out. */
int ae_key_authorization(const ae_key *k, const char *token, char *out, size_t outlen);

/* CSR for one DNS name (CN + SAN), signed by k, as base64url DER (malloc'd, caller frees). */
int ae_csr_new(const ae_key *k, const char *domain, char **b64url_der, ae_err *err);

/* base64url without padding; *out malloc'd NUL-terminated, caller frees. */
int ae_b64url_encode(const void *data, size_t len, char **out);
/* Decodes base64url (padding optional); *out malloc'd, caller frees. */
int ae_b64url_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen);
/* SHA-256 of data into out[32]. */
void ae_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
