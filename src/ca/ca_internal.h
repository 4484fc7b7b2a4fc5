/* Private to the internal CA: certificate building and the refcounted issuer. */
#ifndef ACMEDGE_CA_INTERNAL_H
#define ACMEDGE_CA_INTERNAL_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdint.h>

#include "acmedge/common.h"

/* What a new certificate says about its subject. */
typedef struct ca_tmpl {
  const char *cn;
  const char *dns;       /* one DNS SAN, or NULL */
  int is_ca;
  int pathlen;           /* for CAs */
  int64_t not_before, not_after;
} ca_tmpl;

/* Generates a fresh ECDSA P-256 key. Caller owns *out (gnutls_privkey_deinit). */
int ca_keygen(gnutls_privkey_t *out, ae_err *err);
#define CA_SKI_LEN 20 /* SHA-1 */

/* Generates a fresh ECDSA P-256 leaf key: the key, its public half and its SKI (SHA-1 of the
 * public point). Caller owns both keys (gnutls_x509_privkey_deinit, gnutls_pubkey_deinit). */
int ca_leaf_keygen(gnutls_x509_privkey_t *key, gnutls_pubkey_t *pub, unsigned char ski[CA_SKI_LEN], ae_err *err);
/* Builds and signs a CA certificate for key per t. issuer NULL means self-signed (AKI = own SKI);
 * otherwise the issuer DN and AKI come from the issuer certificate. The result is re-imported
 * from DER so it can serve as an issuer itself. Caller owns *out. */
int ca_sign(const ca_tmpl *t, gnutls_privkey_t key, gnutls_x509_crt_t issuer, gnutls_privkey_t issuer_key,
            gnutls_x509_crt_t *out, ae_err *err);
/* Builds and signs a leaf for pub (SKI ski, CA_SKI_LEN bytes) per t, issued by issuer whose SKI
 * (ca_issuer_ski) is aki. The result is the signed structure itself, never to be used as an
 * issuer. Caller owns *out. */
int ca_sign_leaf(const ca_tmpl *t, gnutls_pubkey_t pub, const unsigned char *ski, const unsigned char *aki, size_t akilen,
                 gnutls_x509_crt_t issuer, gnutls_privkey_t issuer_key, gnutls_x509_crt_t *out, ae_err *err);
/* The SKI of issuer into ski (*len: its size in, the length out); 0 or a GnuTLS error. */
int ca_issuer_ski(gnutls_x509_crt_t issuer, unsigned char *ski, size_t *len);
/* PEM exports (malloc'd, caller frees). */
int ca_crt_pem(gnutls_x509_crt_t crt, char **out, ae_err *err);
int ca_key_pem(gnutls_privkey_t key, char **out, ae_err *err);
int ca_xkey_pem(gnutls_x509_privkey_t key, char **out, ae_err *err);
/* Parses a PEM certificate / key; errors name what (label) failed. Caller owns *out. */
int ca_crt_parse(const char *pem, size_t len, const char *label, gnutls_x509_crt_t *out, ae_err *err);
int ca_key_parse(const char *pem, size_t len, const char *label, gnutls_privkey_t *out, ae_err *err);
/* 1 when key is crt's key. */
int ca_key_matches(gnutls_x509_crt_t crt, gnutls_privkey_t key);
/* 1 when child's signature verifies with parent (and parent may sign certificates). */
int ca_signed_by(gnutls_x509_crt_t child, gnutls_x509_crt_t parent);
/* "AB:CD:..." SHA-256 fingerprint of crt into buf (>= 96 bytes). */
void ca_fingerprint(gnutls_x509_crt_t crt, char *buf, size_t len);

/* Records one mint's duration in the latency histogram (ca_metrics.c). */
void ca_observe_mint(double seconds);

#endif
