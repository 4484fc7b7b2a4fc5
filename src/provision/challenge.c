/* Challenge responders' shared state: the http-01 token map and tls-alpn-01 certificates.
 * Lookups come from the port-80 listener and from TLS handshakes (possibly on worker threads),
 * writes from the ACME client, so every access holds one mutex. The maps are small (one entry
 * per authorization in flight), so plain arrays with linear search are enough. */
#include "acmedge/challenge.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AE_CHALLENGE_TOKEN_MAX 128
#define AE_CHALLENGE_KEYAUTH_MAX 512
#define AE_CHALLENGE_DOMAIN_MAX 253
/* RFC 8737 §3: id-pe-acmeIdentifier. */
#define AE_OID_ACME_IDENTIFIER "1.3.6.1.5.5.7.1.31"

typedef struct http01_entry {
  char *token;
  char *keyauth;
  char *domain;
  int64_t mirror_until; /* 0: ours (removed by its job); else a copy of another instance's, until then */
} http01_entry;

typedef struct alpn_entry {
  char *domain;
  ae_cert *cert;
  int64_t mirror_until;
} alpn_entry;

/* Lifetime of a mirrored answer: longer than any validation, short enough to stay small. */
#define AE_CHALLENGE_MIRROR_S 600

struct ae_challenge {
  pthread_mutex_t mu;
  http01_entry *http;
  size_t nhttp, caphttp;
  alpn_entry *alpn;
  size_t nalpn, capalpn;
};

int ae_challenge_new(ae_challenge **out) {
  ae_challenge *ch = ae_calloc(1, sizeof(*ch));
  if (pthread_mutex_init(&ch->mu, NULL) != 0) {
    free(ch);
    return AE_ERR;
  }
  *out = ch;
  return 0;
}

static void http01_entry_clear(http01_entry *e) {
  free(e->token);
  free(e->keyauth);
  free(e->domain);
}

void ae_challenge_free(ae_challenge *ch) {
  if (ch == NULL) return;
  for (size_t i = 0; i < ch->nhttp; i++) http01_entry_clear(&ch->http[i]);
  for (size_t i = 0; i < ch->nalpn; i++) {
    free(ch->alpn[i].domain);
    ae_cert_unref(ch->alpn[i].cert);
  }
  free(ch->http);
  free(ch->alpn);
  pthread_mutex_destroy(&ch->mu);
  free(ch);
}

int ae_challenge_token_valid(const char *token) {
  if (token == NULL) return 0;
  size_t n = 0;
  for (const char *p = token; *p != '\0'; p++, n++) {
    unsigned char c = (unsigned char)*p;
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
             c == '_';
    if (!ok || n >= AE_CHALLENGE_TOKEN_MAX) return 0;
  }
  return n > 0;
}

/* Key authorizations are "token.thumbprint": printable ASCII without spaces, bounded. */
static int keyauth_valid(const char *ka) {
  if (ka == NULL || ka[0] == '\0') return 0;
  size_t n = strlen(ka);
  if (n > AE_CHALLENGE_KEYAUTH_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)ka[i];
    if (c <= 0x20 || c >= 0x7f) return 0;
  }
  return 1;
}

/* Lowercases domain into buf; 0 when it is a plausible DNS name. */
static int domain_norm(const char *domain, char *buf, size_t len) {
  if (domain == NULL) return AE_EINVAL;
  size_t n = strlen(domain);
  if (n == 0 || n > AE_CHALLENGE_DOMAIN_MAX || n >= len) return AE_EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)domain[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '*' || c == '_';
    if (!ok) return AE_EINVAL;
    buf[i] = (char)c;
  }
  buf[n] = '\0';
  return 0;
}

/* Appends a new entry; the caller holds ch->mu. mirror_until 0 marks an answer of this instance. */
static void http01_append(ae_challenge *ch, const char *domain, const char *token, const char *keyauth,
                          int64_t mirror_until) {
  if (ch->nhttp == ch->caphttp) {
    ch->caphttp = ch->caphttp ? ch->caphttp * 2 : 8;
    ch->http = ae_realloc(ch->http, ch->caphttp * sizeof(*ch->http));
  }
  http01_entry *e = &ch->http[ch->nhttp++];
  e->token = ae_strdup(token);
  e->keyauth = ae_strdup(keyauth);
  e->domain = ae_strdup(domain ? domain : "");
  e->mirror_until = mirror_until;
}

int ae_challenge_http01_put(ae_challenge *ch, const char *domain, const char *token, const char *keyauth) {
  if (ch == NULL || !ae_challenge_token_valid(token) || !keyauth_valid(keyauth)) return AE_EINVAL;
  pthread_mutex_lock(&ch->mu);
  for (size_t i = 0; i < ch->nhttp; i++) {
    if (strcmp(ch->http[i].token, token) == 0) {
      free(ch->http[i].keyauth);
      free(ch->http[i].domain);
      ch->http[i].mirror_until = 0;
      ch->http[i].keyauth = ae_strdup(keyauth);
      ch->http[i].domain = ae_strdup(domain ? domain : "");
      pthread_mutex_unlock(&ch->mu);
      return 0;
    }
  }
  http01_append(ch, domain, token, keyauth, 0);
  pthread_mutex_unlock(&ch->mu);
  return 0;
}

int ae_challenge_http01_get(ae_challenge *ch, const char *token, char *out, size_t outlen) {
  if (ch == NULL || !ae_challenge_token_valid(token) || out == NULL || outlen == 0) return AE_EINVAL;
  int rc = AE_ENOTFOUND;
  pthread_mutex_lock(&ch->mu);
  for (size_t i = 0; i < ch->nhttp; i++) {
    if (strcmp(ch->http[i].token, token) == 0) {
      size_t n = strlen(ch->http[i].keyauth);
      if (n >= outlen) {
        rc = AE_ELIMIT;
      } else {
        memcpy(out, ch->http[i].keyauth, n + 1);
        rc = 0;
      }
      break;
    }
  }
  pthread_mutex_unlock(&ch->mu);
  return rc;
}

void ae_challenge_http01_del(ae_challenge *ch, const char *token) {
  if (ch == NULL || token == NULL) return;
  pthread_mutex_lock(&ch->mu);
  for (size_t i = 0; i < ch->nhttp; i++) {
    if (strcmp(ch->http[i].token, token) == 0) {
      http01_entry_clear(&ch->http[i]);
      ch->http[i] = ch->http[ch->nhttp - 1];
      ch->nhttp--;
      break;
    }
  }
  pthread_mutex_unlock(&ch->mu);
}

/* Builds the self-signed RFC 8737 certificate for domain as PEM cert + PKCS#8 PEM key. */
static int alpn_mint(const char *domain, const char *keyauth, gnutls_datum_t *cert_pem,
                     gnutls_datum_t *key_pem, ae_err *err) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  int rc = AE_ERR;
  int g;
  const char *what = "";

  uint8_t digest[32];
  g = gnutls_hash_fast(GNUTLS_DIG_SHA256, keyauth, strlen(keyauth), digest);
  if (g < 0) { what = "sha256"; goto fail; }
  /* The extension value is the DER encoding of an OCTET STRING holding the digest. */
  uint8_t ext[34];
  ext[0] = 0x04;
  ext[1] = 0x20;
  memcpy(ext + 2, digest, sizeof(digest));

  g = gnutls_x509_privkey_init(&key);
  if (g < 0) { what = "privkey_init"; goto fail; }
  g = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  if (g < 0) { what = "privkey_generate"; goto fail; }
  g = gnutls_x509_crt_init(&crt);
  if (g < 0) { what = "crt_init"; goto fail; }
  g = gnutls_x509_crt_set_version(crt, 3);
  if (g < 0) { what = "set_version"; goto fail; }
  uint8_t serial[16];
  g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
  if (g < 0) { what = "rnd"; goto fail; }
  serial[0] &= 0x7f; /* positive INTEGER */
  serial[0] |= 0x01; /* and no leading zero byte */
  g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
  if (g < 0) { what = "set_serial"; goto fail; }
  time_t now = time(NULL);
  g = gnutls_x509_crt_set_activation_time(crt, now - 3600);
  if (g < 0) { what = "set_activation_time"; goto fail; }
  g = gnutls_x509_crt_set_expiration_time(crt, now + 7 * 24 * 3600);
  if (g < 0) { what = "set_expiration_time"; goto fail; }
  g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "acmedge tls-alpn-01", 19);
  if (g < 0) { what = "set_dn"; goto fail; }
  g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, domain, (unsigned)strlen(domain),
                                           GNUTLS_FSAN_SET);
  if (g < 0) { what = "set_subject_alt_name"; goto fail; }
  g = gnutls_x509_crt_set_extension_by_oid(crt, AE_OID_ACME_IDENTIFIER, ext, sizeof(ext), 1);
  if (g < 0) { what = "set_extension acmeIdentifier"; goto fail; }
  g = gnutls_x509_crt_set_key(crt, key);
  if (g < 0) { what = "set_key"; goto fail; }
  g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
  if (g < 0) { what = "sign"; goto fail; }
  g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, cert_pem);
  if (g < 0) { what = "crt_export"; goto fail; }
  g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, key_pem);
  if (g < 0) {
    gnutls_free(cert_pem->data);
    cert_pem->data = NULL;
    what = "privkey_export";
    goto fail;
  }
  rc = 0;
  goto done;
fail:
  rc = ae_err_set(err, AE_ERR, "tls-alpn-01 certificate for %s: %s: %s", domain, what, gnutls_strerror(g));
done:
  if (crt != NULL) gnutls_x509_crt_deinit(crt);
  if (key != NULL) gnutls_x509_privkey_deinit(key);
  return rc;
}

int ae_challenge_alpn_put(ae_challenge *ch, const char *domain, const char *keyauth, ae_err *err) {
  char name[AE_CHALLENGE_DOMAIN_MAX + 1];
  if (ch == NULL || domain_norm(domain, name, sizeof(name)) != 0)
    return ae_err_set(err, AE_EINVAL, "tls-alpn-01: invalid domain");
  if (!keyauth_valid(keyauth)) return ae_err_set(err, AE_EINVAL, "tls-alpn-01: invalid key authorization");

  gnutls_datum_t cert_pem = {NULL, 0}, key_pem = {NULL, 0};
  int rc = alpn_mint(name, keyauth, &cert_pem, &key_pem, err);
  if (rc < 0) return rc;
  ae_cert *cert = NULL;
  rc = ae_cert_from_pem((const char *)cert_pem.data, cert_pem.size, (const char *)key_pem.data, key_pem.size,
                        &cert, err);
  gnutls_free(cert_pem.data);
  /* The key PEM is sensitive: wipe before releasing. */
  if (key_pem.data != NULL) gnutls_memset(key_pem.data, 0, key_pem.size);
  gnutls_free(key_pem.data);
  if (rc < 0) return rc;

  ae_cert *old = NULL;
  pthread_mutex_lock(&ch->mu);
  size_t i;
  for (i = 0; i < ch->nalpn; i++) {
    if (strcmp(ch->alpn[i].domain, name) == 0) break;
  }
  if (i < ch->nalpn) {
    old = ch->alpn[i].cert;
    ch->alpn[i].cert = cert;
    ch->alpn[i].mirror_until = 0;
  } else {
    if (ch->nalpn == ch->capalpn) {
      ch->capalpn = ch->capalpn ? ch->capalpn * 2 : 8;
      ch->alpn = ae_realloc(ch->alpn, ch->capalpn * sizeof(*ch->alpn));
    }
    ch->alpn[ch->nalpn].domain = ae_strdup(name);
    ch->alpn[ch->nalpn].cert = cert;
    ch->alpn[ch->nalpn].mirror_until = 0;
    ch->nalpn++;
  }
  pthread_mutex_unlock(&ch->mu);
  ae_cert_unref(old);
  return 0;
}

ae_cert *ae_challenge_alpn_get(ae_challenge *ch, const char *domain) {
  char name[AE_CHALLENGE_DOMAIN_MAX + 1];
  if (ch == NULL || domain_norm(domain, name, sizeof(name)) != 0) return NULL;
  ae_cert *c = NULL;
  pthread_mutex_lock(&ch->mu);
  for (size_t i = 0; i < ch->nalpn; i++) {
    if (strcmp(ch->alpn[i].domain, name) == 0) {
      c = ae_cert_ref(ch->alpn[i].cert);
      break;
    }
  }
  pthread_mutex_unlock(&ch->mu);
  return c;
}

void ae_challenge_alpn_del(ae_challenge *ch, const char *domain) {
  char name[AE_CHALLENGE_DOMAIN_MAX + 1];
  if (ch == NULL || domain_norm(domain, name, sizeof(name)) != 0) return;
  ae_cert *old = NULL;
  pthread_mutex_lock(&ch->mu);
  for (size_t i = 0; i < ch->nalpn; i++) {
    if (strcmp(ch->alpn[i].domain, name) == 0) {
      old = ch->alpn[i].cert;
      free(ch->alpn[i].domain);
      ch->alpn[i] = ch->alpn[ch->nalpn - 1];
      ch->nalpn--;
      break;
    }
  }
  pthread_mutex_unlock(&ch->mu);
  ae_cert_unref(old);
}

size_t ae_challenge_count(ae_challenge *ch) {
  if (ch == NULL) return 0;
  pthread_mutex_lock(&ch->mu);
  size_t n = ch->nhttp + ch->nalpn;
  pthread_mutex_unlock(&ch->mu);
  return n;
}

/* Drops mirrored answers past their lifetime; called with the mutex held. */
static void purge_mirrors(ae_challenge *ch, int64_t now, ae_cert **drop, size_t *ndrop, size_t max) {
  for (size_t i = 0; i < ch->nhttp;) {
    if (ch->http[i].mirror_until && ch->http[i].mirror_until < now) {
      http01_entry_clear(&ch->http[i]);
      ch->http[i] = ch->http[--ch->nhttp];
    } else {
      i++;
    }
  }
  for (size_t i = 0; i < ch->nalpn;) {
    if (ch->alpn[i].mirror_until && ch->alpn[i].mirror_until < now && *ndrop < max) {
      drop[(*ndrop)++] = ch->alpn[i].cert;
      free(ch->alpn[i].domain);
      ch->alpn[i] = ch->alpn[--ch->nalpn];
    } else {
      i++;
    }
  }
}

int ae_challenge_mirror(ae_challenge *ch, int alpn, const char *domain, const char *token, const char *keyauth,
                        ae_err *err) {
  if (ch == NULL) return ae_err_set(err, AE_EINVAL, "challenge mirror: no map");
  int64_t now = (int64_t)time(NULL);
  ae_cert *drop[8];
  size_t ndrop = 0;
  int rc = 0;
  if (!alpn) {
    if (!ae_challenge_token_valid(token) || !keyauth_valid(keyauth))
      return ae_err_set(err, AE_EINVAL, "http-01 mirror for %.80s: invalid token or key authorization", domain);
    pthread_mutex_lock(&ch->mu);
    purge_mirrors(ch, now, drop, &ndrop, 8);
    size_t i;
    for (i = 0; i < ch->nhttp && strcmp(ch->http[i].token, token) != 0; i++) {
    }
    if (i == ch->nhttp)
      http01_append(ch, domain, token, keyauth, now + AE_CHALLENGE_MIRROR_S);
    /* else: ours (published by this instance) or already mirrored */
    pthread_mutex_unlock(&ch->mu);
  } else {
    pthread_mutex_lock(&ch->mu);
    purge_mirrors(ch, now, drop, &ndrop, 8);
    int ours = 0;
    char name[AE_CHALLENGE_DOMAIN_MAX + 1];
    if (domain_norm(domain, name, sizeof(name)) == 0)
      for (size_t i = 0; i < ch->nalpn; i++)
        if (strcmp(ch->alpn[i].domain, name) == 0 && ch->alpn[i].mirror_until == 0) ours = 1;
    pthread_mutex_unlock(&ch->mu);
    if (!ours) {
      rc = ae_challenge_alpn_put(ch, domain, keyauth, err);
      if (rc == 0) {
        pthread_mutex_lock(&ch->mu);
        for (size_t i = 0; i < ch->nalpn; i++)
          if (strcmp(ch->alpn[i].domain, name) == 0) ch->alpn[i].mirror_until = now + AE_CHALLENGE_MIRROR_S;
        pthread_mutex_unlock(&ch->mu);
      }
    }
  }
  for (size_t i = 0; i < ndrop; i++) ae_cert_unref(drop[i]);
  return rc;
}
