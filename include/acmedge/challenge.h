/* Challenge responders' shared state: http-01 token map and tls-alpn-01 certificates (RFC 8737).
 * Thread-safe (a mutex), since handshakes may run on worker loops. */
#ifndef ACMEDGE_CHALLENGE_H
#define ACMEDGE_CHALLENGE_H

#include <stddef.h>
#include "acmedge/common.h"
#include "acmedge/certstore.h"

typedef struct ae_challenge ae_challenge;

/* Creates an empty map. Caller owns *out. */
int ae_challenge_new(ae_challenge **out);
/* Frees it and all entries. */
void ae_challenge_free(ae_challenge *ch);
/* Returns 1 when token is a non-empty base64url string of sane length (<= 128). */
int ae_challenge_token_valid(const char *token);
/* Publishes token -> key authorization for domain. AE_EINVAL for a bad token. */
int ae_challenge_http01_put(ae_challenge *ch, const char *domain, const char *token, const char *keyauth);
/* Copies the key authorization for token into out; AE_ENOTFOUND when absent. */
int ae_challenge_http01_get(ae_challenge *ch, const char *token, char *out, size_t outlen);
/* Removes a token (absent is fine). */
void ae_challenge_http01_del(ae_challenge *ch, const char *token);
/* Mints and publishes the tls-alpn-01 certificate for domain (acmeIdentifier = SHA-256(keyauth)). */
int ae_challenge_alpn_put(ae_challenge *ch, const char *domain, const char *keyauth, ae_err *err);
/* Returns a new reference to the tls-alpn-01 cert for domain, or NULL. */
ae_cert *ae_challenge_alpn_get(ae_challenge *ch, const char *domain);
/* Removes the tls-alpn-01 cert for domain (absent is fine). */
void ae_challenge_alpn_del(ae_challenge *ch, const char *domain);
/* Number of published entries (both kinds). */
size_t ae_challenge_count(ae_challenge *ch);
/* Adds another instance's challenge answer (alpn = 0: http-01 token; 1: tls-alpn-01 for domain),
 * kept for ten minutes; never replaces an answer this instance published itself. */
int ae_challenge_mirror(ae_challenge *ch, int alpn, const char *domain, const char *token, const char *keyauth,
                        ae_err *err);

#endif
