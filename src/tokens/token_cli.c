/* `acmedge token keygen|mint|inspect`: offline tools for issuers; none of them needs a running
 * acmedge or a config file. */
#include "acmedge/tokens.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *f) {
  fputs("usage: acmedge token keygen --out FILE\n"
        "       acmedge token mint --key FILE --iss I --sub S [--groups a,b] [--aud A] [--ttl 1h]\n"
        "                          [--bind CERT.pem]\n"
        "       acmedge token inspect TOKEN\n"
        "\n"
        "  keygen   writes a new Ed25519 issuer key (PKCS#8 PEM, mode 0600) and prints its public key\n"
        "           as the base64url value for cap_tokens.keys\n"
        "  mint     prints a signed token; --ttl takes seconds or a number with s, m, h or d\n"
        "           (default 1h), --aud defaults to \"acmedge\", --bind binds the token to a client\n"
        "           certificate (cnf = SHA-256 of its DER)\n"
        "  inspect  decodes a token WITHOUT verifying it and prints its claims\n",
        f);
}

static int cmd_keygen(int argc, char **argv) {
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
      out = argv[++i];
    else {
      usage(stderr);
      return 2;
    }
  }
  if (!out || !*out) {
    fprintf(stderr, "acmedge token keygen: --out FILE is required\n");
    return 2;
  }
  struct stat st;
  if (stat(out, &st) == 0) {
    fprintf(stderr, "acmedge token keygen: %s already exists; not overwriting a key\n", out);
    return 1;
  }
  gnutls_x509_privkey_t k = NULL;
  gnutls_datum_t pem = {0};
  int rc = 1;
  if (gnutls_x509_privkey_init(&k) != 0 || gnutls_x509_privkey_generate(k, GNUTLS_PK_EDDSA_ED25519, 0, 0) != 0 ||
      gnutls_x509_privkey_export2_pkcs8(k, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &pem) != 0) {
    fprintf(stderr, "acmedge token keygen: key generation failed\n");
    goto out;
  }
  ae_err err = {0};
  if (ae_write_file_atomic(out, pem.data, pem.size, 0600, &err) != 0) {
    fprintf(stderr, "acmedge token keygen: %s\n", err.msg);
    goto out;
  }
  uint8_t seed[32], pub[32];
  if (ae_tok_key_load(out, seed, pub, &err) != 0) {
    fprintf(stderr, "acmedge token keygen: %s\n", err.msg);
    goto out;
  }
  gnutls_memset(seed, 0, sizeof(seed));
  char *b = ae_tok_b64_encode(pub, 32);
  printf("%s\n", b);
  free(b);
  rc = 0;
out:
  if (pem.data) {
    gnutls_memset(pem.data, 0, pem.size);
    gnutls_free(pem.data);
  }
  gnutls_x509_privkey_deinit(k);
  return rc;
}

/* "90", "90s", "15m", "1h", "2d" → seconds; -1 when not a positive duration. */
static int64_t parse_ttl(const char *s) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v <= 0 || v > 10LL * 365 * 86400)
    return -1;
  int64_t mul = 1;
  if (*end == 'm')
    mul = 60;
  else if (*end == 'h')
    mul = 3600;
  else if (*end == 'd')
    mul = 86400;
  else if (*end && *end != 's')
    return -1;
  if (*end && end[1])
    return -1;
  return v * mul;
}

/* SHA-256 of the DER of the first certificate in a PEM file. */
static int cert_hash(const char *path, uint8_t out[32], ae_err *err) {
  char *pem = NULL;
  size_t len = 0;
  int rc = ae_read_file(path, 1 << 20, &pem, &len, err);
  if (rc)
    return rc;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len}, der = {0};
  rc = AE_EINVAL;
  if (gnutls_x509_crt_init(&crt) == 0 && gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) == 0 &&
      gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der) == 0 &&
      gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, out) == 0)
    rc = 0;
  gnutls_free(der.data);
  gnutls_x509_crt_deinit(crt);
  free(pem);
  if (rc)
    return ae_err_set(err, rc, "%s: not a PEM certificate", path);
  return 0;
}

static char **split_groups(const char *s, size_t *n) {
  *n = 0;
  char **v = ae_calloc(strlen(s) + 1, sizeof(char *));
  const char *p = s;
  while (*p) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    if (l) {
      v[*n] = ae_malloc(l + 1);
      memcpy(v[*n], p, l);
      v[(*n)++][l] = 0;
    }
    p += l + (c ? 1 : 0);
  }
  return v;
}

static int cmd_mint(int argc, char **argv) {
  const char *key = NULL, *groups = "", *bind = NULL, *ttl = "1h";
  ae_tok_mint_args a = {.aud = "acmedge"};
  /* Every option takes a value: the loop steps over option and value together. */
  for (int i = 1; i < argc; i += 2) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "acmedge token mint: %s needs a value\n", o);
      return 2;
    }
    if (strcmp(o, "--key") == 0)
      key = v;
    else if (strcmp(o, "--iss") == 0)
      a.iss = v;
    else if (strcmp(o, "--sub") == 0)
      a.sub = v;
    else if (strcmp(o, "--aud") == 0)
      a.aud = v;
    else if (strcmp(o, "--groups") == 0)
      groups = v;
    else if (strcmp(o, "--ttl") == 0)
      ttl = v;
    else if (strcmp(o, "--bind") == 0)
      bind = v;
    else {
      fprintf(stderr, "acmedge token mint: unknown option '%s'\n", o);
      return 2;
    }
  }
  if (!key || !a.iss || !a.sub) {
    fprintf(stderr, "acmedge token mint: --key, --iss and --sub are required\n");
    return 2;
  }
  a.ttl_s = parse_ttl(ttl);
  if (a.ttl_s < 0) {
    fprintf(stderr, "acmedge token mint: --ttl '%s': expected e.g. 600, 15m, 1h or 1d\n", ttl);
    return 2;
  }
  ae_err err = {0};
  uint8_t seed[32], pub[32], cnf[32];
  if (bind && cert_hash(bind, cnf, &err) != 0) {
    fprintf(stderr, "acmedge token mint: --bind %s\n", err.msg);
    return 1;
  }
  if (ae_tok_key_load(key, seed, pub, &err) != 0) {
    fprintf(stderr, "acmedge token mint: --key %s\n", err.msg);
    return 1;
  }
  char **gv = split_groups(groups, &a.ngroups);
  a.groups = gv;
  a.cnf = bind ? cnf : NULL;
  a.now = (int64_t)time(NULL);
  char *tok = NULL;
  int rc = ae_tok_mint(seed, pub, &a, &tok, &err);
  gnutls_memset(seed, 0, sizeof(seed));
  for (size_t i = 0; i < a.ngroups; i++)
    free(gv[i]);
  free(gv);
  if (rc) {
    fprintf(stderr, "acmedge token mint: %s\n", err.msg);
    return 1;
  }
  /* A token that this build would refuse to parse must never be printed. */
  ae_tok_parsed t;
  ae_tok_reason r = ae_tok_parse(tok, strlen(tok), &t);
  ae_tok_claims_clear(&t.claims);
  if (r != AE_TOK_OK) {
    fprintf(stderr, "acmedge token mint: claims rejected (%s): names may not contain control characters, "
            "groups no ',' or ' ', each at most %u bytes\n", ae_tok_reason_name(r), AE_TOK_MAX_STR);
    free(tok);
    return 1;
  }
  printf("%s\n", tok);
  free(tok);
  return 0;
}

static int cmd_inspect(int argc, char **argv) {
  if (argc != 2) {
    usage(stderr);
    return 2;
  }
  const char *tok = argv[1];
  size_t len = strlen(tok);
  ae_tok_parsed t;
  ae_tok_reason r = ae_tok_parse(tok, len, &t);
  if (r != AE_TOK_OK) {
    fprintf(stderr, "acmedge token inspect: not a token: %s\n", ae_tok_reason_name(r));
    return 1;
  }
  uint8_t buf[AE_TOK_MAX_PAYLOAD];
  size_t n = 0;
  ae_tok_b64_decode(t.payload_b64, t.payload_b64_len, buf, sizeof(buf), &n);
  json_t *o = json_loadb((const char *)buf, n, 0, NULL);
  char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
  printf("%s\n", s ? s : "{}");
  free(s);
  json_decref(o);
  char nbf[40], exp[40], iat[40];
  ae_time_rfc3339(t.claims.nbf, nbf, sizeof(nbf));
  ae_time_rfc3339(t.claims.exp, exp, sizeof(exp));
  ae_time_rfc3339(t.claims.iat, iat, sizeof(iat));
  printf("issued %s, valid from %s until %s%s\n", iat, nbf, exp, t.claims.has_cnf ? ", bound to a client certificate" : "");
  printf("signature NOT verified (inspect does not trust the token)\n");
  ae_tok_claims_clear(&t.claims);
  return 0;
}

int ae_tok_cli(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "keygen") == 0)
    return cmd_keygen(argc - 1, argv + 1);
  if (strcmp(argv[1], "mint") == 0)
    return cmd_mint(argc - 1, argv + 1);
  if (strcmp(argv[1], "inspect") == 0)
    return cmd_inspect(argc - 1, argv + 1);
  fprintf(stderr, "acmedge token: unknown subcommand '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
