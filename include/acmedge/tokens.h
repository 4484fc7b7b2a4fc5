/* Capability tokens (docs/tokens.md): Ed25519-signed, expiring, audience- and channel-bound
 * bearer credentials "cap:" b64url(payload) "." b64url(sig), verified against a keyring of issuer
 * public keys with a pinned check order and stable reason codes. */
#ifndef ACMEDGE_TOKENS_H
#define ACMEDGE_TOKENS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "acmedge/common.h"
#include "acmedge/events.h"

#define AE_TOK_PREFIX "cap:"
#define AE_TOK_SIG_CONTEXT "acmedge-cap-v1."
#define AE_TOK_MAX_PAYLOAD 4096u     /* decoded payload bytes */
#define AE_TOK_MAX_TEXT 8192u        /* whole token text, refused before any decoding */
#define AE_TOK_MAX_GROUPS 64u
#define AE_TOK_MAX_STR 256u          /* iss, sub, aud, jti, one group */
#define AE_TOK_DEFAULT_LEEWAY_S 60
#define AE_TOK_DEFAULT_MAX_TTL_S 86400

/* Stable reason codes, in verification order; names via ae_tok_reason_name. */
typedef enum {
  AE_TOK_OK = 0,
  AE_TOK_MISSING_PREFIX,
  AE_TOK_MALFORMED,
  AE_TOK_BASE64,
  AE_TOK_JSON,
  AE_TOK_UNKNOWN_ISSUER,
  AE_TOK_BAD_SIGNATURE,
  AE_TOK_NOT_YET_VALID,
  AE_TOK_EXPIRED,
  AE_TOK_TOO_LONG_LIVED,
  AE_TOK_REVOKED,
  AE_TOK_AUDIENCE_MISMATCH,
  AE_TOK_UNBOUND,
  AE_TOK_BINDING_MISMATCH,
  AE_TOK_INSUFFICIENT_SCOPE,
  AE_TOK_REASON_COUNT
} ae_tok_reason;

/* The static name of a reason ("expired", ...); "ok" for AE_TOK_OK. */
const char *ae_tok_reason_name(ae_tok_reason r);

/* Decoded claims. Strings are owned by the struct (ae_tok_claims_clear). */
typedef struct ae_tok_claims {
  char *iss, *sub, *aud, *jti;
  char **groups;
  size_t ngroups;
  int64_t exp, nbf, iat;
  int has_cnf;
  uint8_t cnf[32];          /* SHA-256 of the client certificate DER */
} ae_tok_claims;

/* Frees the strings of c and zeroes it (safe on a zeroed struct). */
void ae_tok_claims_clear(ae_tok_claims *c);

/* A token split and decoded but not yet trusted. payload_b64 points into the caller's text. */
typedef struct ae_tok_parsed {
  ae_tok_claims claims;
  const char *payload_b64;  /* the signed text (without the context prefix) */
  size_t payload_b64_len;
  uint8_t sig[64];
} ae_tok_parsed;

/* Steps prefix → shape → base64url → sizes → JSON. Returns AE_TOK_OK and fills out (clear with
 * ae_tok_claims_clear(&out->claims)) or the first failing reason (out then holds nothing). */
ae_tok_reason ae_tok_parse(const char *text, size_t len, ae_tok_parsed *out);

/* Canonical base64url without padding: encodes n bytes into a malloc'd string (caller frees). */
char *ae_tok_b64_encode(const uint8_t *data, size_t n);
/* Strict decoding (alphabet A-Z a-z 0-9 - _, no '=', unused trailing bits zero) into out
 * (capacity cap); 0 with *outlen, or AE_EINVAL on any non-canonical input, AE_ELIMIT when too big. */
int ae_tok_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* ---- Ed25519 (nettle) */

/* Derives the 32-byte public key from a 32-byte seed. */
void ae_ed25519_public(const uint8_t seed[32], uint8_t pub[32]);
/* Signs msg with the seed (pub must match it) into sig. */
void ae_ed25519_sign(const uint8_t seed[32], const uint8_t pub[32], const uint8_t *msg, size_t n,
                     uint8_t sig[64]);
/* 1 when sig is a valid signature of msg under pub, else 0. */
int ae_ed25519_verify(const uint8_t pub[32], const uint8_t *msg, size_t n, const uint8_t sig[64]);
/* 1 when pub is one of the known small-order encodings (sign bit ignored) or not canonical. */
int ae_ed25519_weak_public(const uint8_t pub[32]);

/* ---- keyring */

typedef struct ae_tok_keyring ae_tok_keyring;

/* Builds a keyring from a JSON object {"iss": "b64url 32-byte key"}; path names the object in
 * error messages ("cap_tokens.keys"). Refuses non-canonical base64url, lengths other than 32,
 * duplicate issuers and small-order keys. Caller owns *out (ae_tok_keyring_free). */
int ae_tok_keyring_from_json(json_t *obj, const char *path, ae_tok_keyring **out, ae_err *err);
/* Frees a keyring (NULL is fine). */
void ae_tok_keyring_free(ae_tok_keyring *kr);
/* The public key of iss, or NULL. Owned by the keyring. */
const uint8_t *ae_tok_keyring_get(const ae_tok_keyring *kr, const char *iss);
/* Number of issuers. */
size_t ae_tok_keyring_count(const ae_tok_keyring *kr);
/* The i-th issuer name and key (insertion order); 0, or AE_ENOTFOUND past the end. */
int ae_tok_keyring_at(const ae_tok_keyring *kr, size_t i, const char **iss, const uint8_t **key);

/* ---- revocation set (thread-safe; persisted atomically when a path is set) */

typedef struct ae_tok_revset ae_tok_revset;

/* Creates a revocation set; path (may be NULL: memory only) is read when it exists. Caller owns
 * *out (ae_tok_revset_free). */
int ae_tok_revset_open(const char *path, ae_tok_revset **out, ae_err *err);
/* Frees the set (NULL is fine). */
void ae_tok_revset_free(ae_tok_revset *rs);
/* Revokes one token id (iss NULL) or a subject (iss + sub; jti NULL). Persists before returning;
 * *added is 1 when the entry was new, 0 when it was already revoked (idempotent). */
int ae_tok_revset_add(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, int *added,
                      ae_err *err);
/* Undoes a revocation (same arguments as add); *removed is 1 when it was present. */
int ae_tok_revset_remove(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub, int *removed,
                         ae_err *err);
/* 1 when the token id or the subject is revoked. */
int ae_tok_revset_contains(ae_tok_revset *rs, const char *jti, const char *iss, const char *sub);

/* ---- verification */

typedef struct ae_tok_policy {
  const ae_tok_keyring *keys;
  ae_tok_revset *revoked;      /* may be NULL */
  const char *audience;        /* NULL or "": audience not checked */
  int64_t leeway_s;
  int64_t max_ttl_s;
  int require_bind;            /* tokens without cnf fail with unbound */
} ae_tok_policy;

/* Verifies text at time now: binding is SHA-256 of the connection's client certificate DER or
 * NULL when there is none. Returns AE_TOK_OK with *claims filled (caller clears), or the reason
 * of the first failing check in the pinned order (claims then hold nothing). */
ae_tok_reason ae_tok_verify(const ae_tok_policy *p, const char *text, size_t len, const uint8_t *binding,
                            int64_t now, ae_tok_claims *claims);

/* The checks after the signature (time window, lifetime, revocation, audience, binding) on claims
 * whose signature was already verified; returns the first failing reason or AE_TOK_OK. */
ae_tok_reason ae_tok_check_claims(const ae_tok_policy *p, const ae_tok_claims *c, const uint8_t *binding,
                                  int64_t now);

/* ---- verified-token cache: skips parsing and the Ed25519 verification for a token seen before;
 * every check after the signature still runs on each use, so revocation stays immediate. */

typedef struct ae_tok_cache ae_tok_cache;

/* Creates a cache of `slots` entries (direct-mapped by SHA-256 of the token text). Caller owns it. */
ae_tok_cache *ae_tok_cache_new(size_t slots);
/* Frees the cache (NULL is fine). */
void ae_tok_cache_free(ae_tok_cache *tc);
/* Like ae_tok_verify, consulting and filling the cache; gen identifies the keyring the cached
 * signatures were checked with (entries of another generation are ignored). Thread-safe. */
ae_tok_reason ae_tok_cache_verify(ae_tok_cache *tc, uintptr_t gen, const ae_tok_policy *p, const char *text,
                                  size_t len, const uint8_t *binding, int64_t now, ae_tok_claims *claims);

/* AE_TOK_OK when claims carry at least one of groups (n == 0: any token), else insufficient_scope. */
ae_tok_reason ae_tok_check_groups(const ae_tok_claims *c, char *const *groups, size_t n);

/* ---- configuration (cap_tokens, admin.tls, routes[].auth.cap_tokens) */

struct ae_config;

/* routes[].auth.cap_tokens: what a protected route demands. */
typedef struct ae_tok_route_auth {
  char *audience;              /* NULL: cap_tokens.audience */
  char **groups;               /* any one of them is enough; none listed: any valid token */
  size_t ngroups;
  int bind;                    /* tokens must carry cnf and the client must present that cert */
  int forward_token;           /* pass the Authorization header to the upstream */
} ae_tok_route_auth;

/* The top-level cap_tokens object and admin.tls. */
typedef struct ae_tok_config {
  ae_tok_keyring *keys;        /* NULL when cap_tokens is not configured */
  char *audience;
  int64_t leeway_s;
  int64_t max_ttl_s;
  char *admin_tls_cert, *admin_tls_key, *admin_tls_client_ca; /* admin.tls; NULL when unset */
} ae_tok_config;

/* Parses cap_tokens, admin.tls and every routes[i].auth of root into cfg->tokens and
 * cfg->routes[i].auth (routes must be parsed already); name prefixes messages
 * ("FILE: field.path: problem"). */
int ae_tok_config_parse(const char *name, json_t *root, struct ae_config *cfg, ae_err *err);
/* Frees what ae_tok_config_parse stored in cfg. */
void ae_tok_config_free(struct ae_config *cfg);
/* Frees one route's auth (NULL is fine). */
void ae_tok_route_auth_free(ae_tok_route_auth *ra);

/* ---- process runtime: the current keyring/policy and the persisted revocation set */

/* Opens STORAGE/tokens/revoked.json and installs cfg as the current policy. Call once at start. */
int ae_tok_runtime_init(const struct ae_config *cfg, ae_err *err);
/* Installs a reloaded config (keeps a reference); any thread may verify meanwhile. */
void ae_tok_runtime_set_config(const struct ae_config *cfg);
/* Drops the config reference and the revocation set. */
void ae_tok_runtime_shutdown(void);
/* 1 when cap_tokens is configured. */
int ae_tok_runtime_enabled(void);
/* The process revocation set, or NULL before init. Owned by the runtime. */
ae_tok_revset *ae_tok_runtime_revset(void);
/* 1 when a route for this server name demands bound tokens, so its handshakes must ask for a
 * client certificate (other names never send a CertificateRequest: browsers would prompt). */
int ae_tok_runtime_wants_client_cert(const char *sni);
/* SHA-256 of the leaf certificate the peer of a GnuTLS session (gnutls_session_t) presented;
 * AE_ENOTFOUND when it presented none. */
int ae_tok_peer_cert_hash(void *session, uint8_t out[32]);
/* The configured keyring as a new JSON array [{"iss", "key"}] (caller decrefs). */
json_t *ae_tok_runtime_keys(void);
/* Verifies a token against the current config: audience NULL means cap_tokens.audience; then the
 * group check (n == 0: none). Counts rejections by reason. Fills *claims on AE_TOK_OK. */
ae_tok_reason ae_tok_runtime_verify(const char *text, size_t len, const char *audience, int require_bind,
                                    char *const *groups, size_t ngroups, const uint8_t *binding,
                                    ae_tok_claims *claims);

/* ---- token_rejected events from any thread (emitted on the control loop) */

/* Starts relaying onto ev from loop (the control loop). */
int ae_tok_relay_attach(uv_loop_t *loop, ae_events *ev);
/* Stops relaying and closes the relay's handle (call while stopping, before the loop ends). */
void ae_tok_relay_detach(void);
/* Queues a token_rejected event {reason, source "route"} for host; any thread, never blocks on I/O.
 * Carries the server name only: never the token or an unverified subject. */
void ae_tok_relay_rejected(ae_tok_reason r, const char *host);

/* ---- minting */

typedef struct ae_tok_mint_args {
  const char *iss, *sub, *aud;
  char *const *groups;
  size_t ngroups;
  int64_t now;
  int64_t ttl_s;
  const uint8_t *cnf;          /* 32 bytes or NULL */
  const char *jti;             /* NULL: 16 random bytes, base64url */
} ae_tok_mint_args;

/* Signs a token with seed/pub; *out is malloc'd "cap:..." (caller frees). */
int ae_tok_mint(const uint8_t seed[32], const uint8_t pub[32], const ae_tok_mint_args *a, char **out, ae_err *err);

/* Reads an issuer key file (PKCS#8 PEM as written by keygen or `openssl genpkey -algorithm
 * ed25519`) into seed and public key. */
int ae_tok_key_load(const char *path, uint8_t seed[32], uint8_t pub[32], ae_err *err);

/* `acmedge token keygen|mint|inspect ...`; argv[0] is "token". Returns the exit code. */
int ae_tok_cli(int argc, char **argv);

#endif
