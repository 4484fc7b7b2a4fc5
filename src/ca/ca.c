/* The internal authority: root and intermediate persisted through the storage layer (keys 0600,
 * written atomically, never logged), intermediate rotation at 20 % life left, leaf minting. */
#include "acmedge/ca.h"
#include "ca_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "acmedge/log.h"

#define SUB "ca"
#define DIR_ "pki/" AE_CA_ID "/"
#define BACKDATE_S 60

/* One intermediate with its key; refcounted so a rotation never frees what a mint still uses. */
typedef struct issuer {
  atomic_int refs;
  gnutls_x509_crt_t crt;
  gnutls_privkey_t key;
  char *pem;
  /* Read once per intermediate rather than once per leaf: its DER (the chain's second
   * certificate, shared by every served leaf) and its SKI (every leaf's AKI). */
  gnutls_datum_t der;
  unsigned char ski[64];
  size_t skilen;
  char fp[128];              /* SHA-256 fingerprint, for ca_rotated */
  int64_t not_before, not_after;
} issuer;

struct ae_ca {
  pthread_mutex_t lock;      /* guards cur and rotation */
  ae_storage *st;
  ae_ca_opts opts;
  gnutls_x509_crt_t root;
  gnutls_privkey_t root_key;
  char *root_pem;
  issuer *cur;
  /* The intermediate ae_ca_take_rotation last reported (or the one found at open): a rotation is
   * reported once, by whoever asks, whichever thread performed it. */
  char reported_fp[128];
  int64_t reported_not_after;
  atomic_uint_fast64_t mints, rotations;
};

static void issuer_unref(issuer *is) {
  if (!is || atomic_fetch_sub(&is->refs, 1) != 1)
    return;
  gnutls_x509_crt_deinit(is->crt);
  gnutls_privkey_deinit(is->key);
  free(is->pem);
  gnutls_free(is->der.data);
  free(is);
}

static issuer *issuer_get(ae_ca *ca) {
  pthread_mutex_lock(&ca->lock);
  issuer *is = ca->cur;
  atomic_fetch_add(&is->refs, 1);
  pthread_mutex_unlock(&ca->lock);
  return is;
}

/* Human-readable location of a storage key: the file path for the fs backend. */
static void where(ae_ca *ca, const char *key, char *buf, size_t len) {
  const char *root = ae_storage_fs_root(ca->st);
  if (root)
    snprintf(buf, len, "%s/%s", root, key);
  else
    snprintf(buf, len, "%s", key);
}

/* A CA key others can read is refused rather than used: it may already be compromised. */
static int check_key_mode(ae_ca *ca, const char *key, ae_err *err) {
  const char *root = ae_storage_fs_root(ca->st);
  if (!root)
    return 0;
  char path[4200];
  struct stat sb;
  snprintf(path, sizeof(path), "%s/%s", root, key);
  if (stat(path, &sb) != 0)
    return 0;
  if (sb.st_mode & 077)
    return ae_err_set(err, AE_EINVAL, "%s: mode %04o, a CA private key must be 0600 (chmod 600 %s)", path,
                      (unsigned)(sb.st_mode & 07777), path);
  return 0;
}

/* Reads one PEM file; *found = 0 when absent. */
static int read_item(ae_ca *ca, const char *key, char **data, size_t *len, int *found, ae_err *err) {
  ae_err e = {0};
  int r = ae_storage_get(ca->st, key, data, len, &e);
  *found = r == 0;
  if (r == AE_ENOTFOUND)
    return 0;
  if (r != 0) {
    char w[4200];
    where(ca, key, w, sizeof(w));
    return ae_err_set(err, r, "%s: %s", w, e.msg);
  }
  return 0;
}

static int write_pair(ae_ca *ca, const char *name, gnutls_x509_crt_t crt, gnutls_privkey_t key, ae_err *err) {
  char *cp = NULL, *kp = NULL, k[128];
  int r = ca_crt_pem(crt, &cp, err);
  if (r == 0)
    r = ca_key_pem(key, &kp, err);
  /* Key first: a crash in between leaves a certificate-less key, which is regenerated, never a
   * certificate whose key is lost. */
  if (r == 0) {
    snprintf(k, sizeof(k), DIR_ "%s.key", name);
    r = ae_storage_put(ca->st, k, kp, strlen(kp), 1, err);
  }
  if (r == 0) {
    snprintf(k, sizeof(k), DIR_ "%s.crt", name);
    r = ae_storage_put(ca->st, k, cp, strlen(cp), 0, err);
  }
  if (kp) {
    memset(kp, 0, strlen(kp));
    free(kp);
  }
  free(cp);
  return r;
}

/* Loads name.crt + name.key. *found = 0 when neither exists. */
static int load_pair(ae_ca *ca, const char *name, gnutls_x509_crt_t *crt, gnutls_privkey_t *key, int *found,
                     ae_err *err) {
  char ck[128], kk[128], wc[4200], wk[4200];
  snprintf(ck, sizeof(ck), DIR_ "%s.crt", name);
  snprintf(kk, sizeof(kk), DIR_ "%s.key", name);
  where(ca, ck, wc, sizeof(wc));
  where(ca, kk, wk, sizeof(wk));
  char *cd = NULL, *kd = NULL;
  size_t cl = 0, kl = 0;
  int fc = 0, fk = 0, r;
  *found = 0;
  if ((r = read_item(ca, ck, &cd, &cl, &fc, err)) != 0 || (r = read_item(ca, kk, &kd, &kl, &fk, err)) != 0)
    goto out;
  if (!fc && !fk)
    goto out;
  *found = 1;
  if (!fk) {
    r = ae_err_set(err, AE_EINVAL, "%s: missing (its certificate %s exists)", wk, wc);
    goto out;
  }
  if ((r = check_key_mode(ca, kk, err)) != 0)
    goto out;
  if (!fc) {
    r = ae_err_set(err, AE_EINVAL, "%s: missing (its key %s exists)", wc, wk);
    goto out;
  }
  if ((r = ca_crt_parse(cd, cl, wc, crt, err)) != 0)
    goto out;
  if ((r = ca_key_parse(kd, kl, wk, key, err)) != 0) {
    gnutls_x509_crt_deinit(*crt);
    goto out;
  }
  if (!ca_key_matches(*crt, *key)) {
    gnutls_x509_crt_deinit(*crt);
    gnutls_privkey_deinit(*key);
    r = ae_err_set(err, AE_EINVAL, "%s: not the key of %s", wk, wc);
  }
out:
  if (kd) {
    memset(kd, 0, kl);
    free(kd);
  }
  free(cd);
  return r;
}

static int make_root(ae_ca *ca, int64_t now, ae_err *err) {
  char cn[64];
  struct tm tmv;
  time_t t = (time_t)now;
  gmtime_r(&t, &tmv);
  snprintf(cn, sizeof(cn), "acmedge Internal Root CA %d", tmv.tm_year + 1900);
  ca_tmpl tp = {.cn = cn, .is_ca = 1, .pathlen = 1, .not_before = now - BACKDATE_S,
                .not_after = now + AE_CA_ROOT_LIFETIME_S};
  int r = ca_keygen(&ca->root_key, err);
  if (r == 0)
    r = ca_sign(&tp, ca->root_key, NULL, NULL, &ca->root, err);
  if (r == 0)
    r = write_pair(ca, "root", ca->root, ca->root_key, err);
  if (r == 0)
    AE_INFO(SUB, "created internal root CA (%s)", cn);
  return r;
}

static int64_t crt_nb(gnutls_x509_crt_t c) { return (int64_t)gnutls_x509_crt_get_activation_time(c); }
static int64_t crt_na(gnutls_x509_crt_t c) { return (int64_t)gnutls_x509_crt_get_expiration_time(c); }

static issuer *issuer_wrap(gnutls_x509_crt_t crt, gnutls_privkey_t key, ae_err *err) {
  issuer *is = ae_calloc(1, sizeof(*is));
  atomic_init(&is->refs, 1);
  is->crt = crt;
  is->key = key;
  is->not_before = crt_nb(crt);
  is->not_after = crt_na(crt);
  ca_fingerprint(crt, is->fp, sizeof(is->fp));
  if (ca_crt_pem(crt, &is->pem, err) != 0) {
    issuer_unref(is);
    return NULL;
  }
  is->skilen = sizeof(is->ski);
  int g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &is->der);
  if (g >= 0)
    g = ca_issuer_ski(crt, is->ski, &is->skilen);
  if (g < 0) {
    ae_err_set(err, AE_EINVAL, "internal CA: intermediate certificate without a usable encoding or SKI: %s",
               gnutls_strerror(g));
    issuer_unref(is);
    return NULL;
  }
  return is;
}

static int make_intermediate(ae_ca *ca, int64_t now, issuer **out, ae_err *err) {
  int64_t na = now + ca->opts.intermediate_lifetime_s;
  if (na > crt_na(ca->root))
    na = crt_na(ca->root);
  ca_tmpl tp = {.cn = AE_CA_INTERMEDIATE_CN, .is_ca = 1, .pathlen = 0,
                .not_before = now - BACKDATE_S, .not_after = na};
  gnutls_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  int r = ca_keygen(&key, err);
  if (r == 0)
    r = ca_sign(&tp, key, ca->root, ca->root_key, &crt, err);
  if (r == 0)
    r = write_pair(ca, "intermediate", crt, key, err);
  if (r != 0) {
    if (crt)
      gnutls_x509_crt_deinit(crt);
    gnutls_privkey_deinit(key);
    return r;
  }
  *out = issuer_wrap(crt, key, err);
  return *out ? 0 : AE_ERR;
}

static int due(const issuer *is, int64_t now) {
  int64_t life = is->not_after - is->not_before;
  return now >= is->not_after - life / 5;
}

int ae_ca_rotate_if_due(ae_ca *ca, int64_t now, int *rotated, ae_err *err) {
  int r = 0;
  *rotated = 0;
  pthread_mutex_lock(&ca->lock);
  if (ca->cur && !due(ca->cur, now))
    goto out;
  if (!ca->opts.create) {
    r = ae_err_set(err, AE_EINVAL, "internal CA: the intermediate needs renewal (read-only open)");
    goto out;
  }
  issuer *n = NULL;
  if ((r = make_intermediate(ca, now, &n, err)) != 0)
    goto out;
  issuer_unref(ca->cur);
  ca->cur = n;
  *rotated = 1;
  atomic_fetch_add(&ca->rotations, 1);
  AE_INFO(SUB, "new intermediate CA, valid until %lld", (long long)n->not_after);
out:
  pthread_mutex_unlock(&ca->lock);
  return r;
}

static int load_root(ae_ca *ca, int64_t now, ae_err *err) {
  int found = 0;
  int r = load_pair(ca, "root", &ca->root, &ca->root_key, &found, err);
  if (r != 0)
    return r;
  if (!found) {
    if (!ca->opts.create)
      return ae_err_set(err, AE_ENOTFOUND, "no internal CA yet under %s (start acmedge with internal_ca enabled)",
                        DIR_);
    return make_root(ca, now, err);
  }
  char w[4200];
  where(ca, DIR_ "root.crt", w, sizeof(w));
  if (crt_na(ca->root) <= now)
    return ae_err_set(err, AE_EINVAL, "%s: the root CA expired; move the pki directory away to create a new one", w);
  if (!ca_signed_by(ca->root, ca->root))
    return ae_err_set(err, AE_EINVAL, "%s: not a self-signed CA certificate", w);
  return 0;
}

static int load_intermediate(ae_ca *ca, int64_t now, ae_err *err) {
  gnutls_x509_crt_t crt = NULL;
  gnutls_privkey_t key = NULL;
  int found = 0, rotated = 0;
  int r = load_pair(ca, "intermediate", &crt, &key, &found, err);
  if (r != 0)
    return r;
  if (found) {
    if (!ca_signed_by(crt, ca->root)) {
      char w[4200];
      where(ca, DIR_ "intermediate.crt", w, sizeof(w));
      gnutls_x509_crt_deinit(crt);
      gnutls_privkey_deinit(key);
      if (!ca->opts.create)
        return ae_err_set(err, AE_EINVAL, "%s: not signed by the root CA", w);
      AE_WARN(SUB, "%s: not signed by the root CA; replacing it", w);
    } else if ((ca->cur = issuer_wrap(crt, key, err)) == NULL) {
      return AE_ERR;
    } else {
      /* A renewal right below (stale intermediate) is then reported as a rotation. */
      snprintf(ca->reported_fp, sizeof(ca->reported_fp), "%s", ca->cur->fp);
      ca->reported_not_after = ca->cur->not_after;
    }
  }
  /* A stale intermediate is fine for read-only opens (status shows it); servers renew it. */
  if (!ca->opts.create)
    return ca->cur ? 0 : ae_err_set(err, AE_ENOTFOUND, "no usable intermediate CA under %s yet", DIR_);
  return ae_ca_rotate_if_due(ca, now, &rotated, err);
}

int ae_ca_open(ae_storage *st, const ae_ca_opts *opts, ae_ca **out, ae_err *err) {
  ae_ca *ca = ae_calloc(1, sizeof(*ca));
  pthread_mutex_init(&ca->lock, NULL);
  ca->st = st;
  ca->opts = *opts;
  if (ca->opts.intermediate_lifetime_s <= 0)
    ca->opts.intermediate_lifetime_s = AE_CA_INTER_LIFETIME_S;
  if (ca->opts.leaf_lifetime_s <= 0)
    ca->opts.leaf_lifetime_s = AE_CA_LEAF_LIFETIME_S;
  atomic_init(&ca->mints, 0);
  atomic_init(&ca->rotations, 0);
  int64_t now = (int64_t)time(NULL);
  int r = load_root(ca, now, err);
  if (r == 0)
    r = load_intermediate(ca, now, err);
  if (r == 0)
    r = ca_crt_pem(ca->root, &ca->root_pem, err);
  if (r == 0 && !ca->reported_fp[0]) {
    /* The first intermediate of a new authority replaces nothing: not a rotation. */
    snprintf(ca->reported_fp, sizeof(ca->reported_fp), "%s", ca->cur->fp);
    ca->reported_not_after = ca->cur->not_after;
  }
  if (r != 0) {
    ae_ca_free(ca);
    return r;
  }
  *out = ca;
  return 0;
}

void ae_ca_free(ae_ca *ca) {
  if (!ca)
    return;
  issuer_unref(ca->cur);
  if (ca->root)
    gnutls_x509_crt_deinit(ca->root);
  if (ca->root_key)
    gnutls_privkey_deinit(ca->root_key);
  free(ca->root_pem);
  pthread_mutex_destroy(&ca->lock);
  free(ca);
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Signs a leaf for name with the current intermediate (rotated first when due). On success the
 * caller owns *crt, *key and the issuer reference *isp (issuer_unref). */
static int mint_leaf(ae_ca *ca, const char *name, int64_t now, issuer **isp, gnutls_x509_crt_t *crt,
                     gnutls_x509_privkey_t *key, ae_err *err) {
  if (!name || !*name || strlen(name) > 253)
    return ae_err_set(err, AE_EINVAL, "internal CA: refusing to mint for an empty or overlong name");
  int rotated = 0;
  ae_err rerr = {0};
  if (ca->opts.create && ae_ca_rotate_if_due(ca, now, &rotated, &rerr) != 0)
    AE_WARN(SUB, "intermediate renewal failed, minting with the current one: %s", rerr.msg);
  issuer *is = issuer_get(ca);
  if (now >= is->not_after) {
    issuer_unref(is);
    return ae_err_set(err, AE_EINVAL, "internal CA: the intermediate expired; cannot mint for %s", name);
  }
  int64_t na = now + ca->opts.leaf_lifetime_s;
  /* A leaf never outlives its issuer: clients would reject the chain before the leaf expires. */
  if (na > is->not_after)
    na = is->not_after;
  ca_tmpl tp = {.cn = name, .dns = name, .not_before = now - BACKDATE_S, .not_after = na};
  gnutls_pubkey_t pub = NULL;
  unsigned char ski[CA_SKI_LEN];
  int r = ca_leaf_keygen(key, &pub, ski, err);
  if (r == 0) {
    r = ca_sign_leaf(&tp, pub, ski, is->ski, is->skilen, is->crt, is->key, crt, err);
    gnutls_pubkey_deinit(pub);
    if (r != 0)
      gnutls_x509_privkey_deinit(*key);
  }
  if (r != 0) {
    issuer_unref(is);
    return r;
  }
  *isp = is;
  return 0;
}

int ae_ca_mint_pem(ae_ca *ca, const char *name, int64_t now, char **cert_pem, char **key_pem, ae_err *err) {
  double t0 = mono_s();
  issuer *is = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_x509_privkey_t key = NULL;
  char *leaf = NULL;
  int r = mint_leaf(ca, name, now, &is, &crt, &key, err);
  if (r != 0)
    return r;
  if ((r = ca_crt_pem(crt, &leaf, err)) == 0 && (r = ca_xkey_pem(key, key_pem, err)) == 0) {
    size_t a = strlen(leaf), b = strlen(is->pem);
    *cert_pem = ae_malloc(a + b + 1);
    memcpy(*cert_pem, leaf, a);
    memcpy(*cert_pem + a, is->pem, b + 1);
    atomic_fetch_add(&ca->mints, 1);
    ca_observe_mint(mono_s() - t0);
  }
  free(leaf);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  issuer_unref(is);
  return r;
}

int ae_ca_mint(ae_ca *ca, const char *name, int64_t now, ae_cert **out, ae_err *err) {
  double t0 = mono_s();
  issuer *is = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_x509_privkey_t key = NULL;
  int r = mint_leaf(ca, name, now, &is, &crt, &key, err);
  if (r != 0)
    return r;
  /* Served straight from the signed structure and the key in hand: no PEM export and re-parse. */
  r = ae_cert_from_parts(crt, &is->der, 1, key, out, err);
  if (r == 0) {
    atomic_fetch_add(&ca->mints, 1);
    ca_observe_mint(mono_s() - t0);
  }
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  issuer_unref(is);
  return r;
}

char *ae_ca_root_pem(ae_ca *ca) { return ae_strdup(ca->root_pem); }

char *ae_ca_intermediate_pem(ae_ca *ca) {
  issuer *is = issuer_get(ca);
  char *s = ae_strdup(is->pem);
  issuer_unref(is);
  return s;
}

static size_t describe(char *buf, size_t len, const char *label, gnutls_x509_crt_t crt) {
  char dn[512], fp[128], nb[40], na[40];
  size_t dnlen = sizeof(dn);
  if (gnutls_x509_crt_get_dn(crt, dn, &dnlen) < 0)
    snprintf(dn, sizeof(dn), "?");
  ca_fingerprint(crt, fp, sizeof(fp));
  ae_time_rfc3339(crt_nb(crt), nb, sizeof(nb));
  ae_time_rfc3339(crt_na(crt), na, sizeof(na));
  int n = snprintf(buf, len, "%s:\n  subject:    %s\n  not before: %s\n  not after:  %s\n  sha256:     %s\n", label,
                   dn, nb, na, fp);
  return n > 0 && (size_t)n < len ? (size_t)n : len - 1;
}

char *ae_ca_status_text(ae_ca *ca) {
  size_t cap = 4096, o = 0;
  char *s = ae_malloc(cap);
  issuer *is = issuer_get(ca);
  o += describe(s + o, cap - o, "root", ca->root);
  o += describe(s + o, cap - o, "intermediate", is->crt);
  int64_t renew = is->not_after - (is->not_after - is->not_before) / 5;
  char when[40];
  ae_time_rfc3339(renew, when, sizeof(when));
  snprintf(s + o, cap - o, "  renews at:  %s\n", when);
  issuer_unref(is);
  return s;
}

int ae_ca_take_rotation(ae_ca *ca, ae_ca_rotation *out) {
  int changed = 0;
  pthread_mutex_lock(&ca->lock);
  if (strcmp(ca->reported_fp, ca->cur->fp) != 0) {
    snprintf(out->old_fp, sizeof(out->old_fp), "%s", ca->reported_fp);
    snprintf(out->new_fp, sizeof(out->new_fp), "%s", ca->cur->fp);
    out->old_not_after = ca->reported_not_after;
    out->new_not_after = ca->cur->not_after;
    snprintf(ca->reported_fp, sizeof(ca->reported_fp), "%s", ca->cur->fp);
    ca->reported_not_after = ca->cur->not_after;
    changed = 1;
  }
  pthread_mutex_unlock(&ca->lock);
  return changed;
}

int64_t ae_ca_check_interval_s(const ae_ca *ca) {
  /* Forty checks per lifetime keep the renewal within 2.5 % of its 20 %-left mark; Caddy checks
   * every 10 minutes, which is plenty for the 7-day default. */
  int64_t s = ca->opts.intermediate_lifetime_s / 40;
  return s < 1 ? 1 : s > 600 ? 600 : s;
}

const char *ae_ca_issuer_kind(const char *issuer_dn) {
  if (!issuer_dn)
    return NULL;
  /* Only this authority uses the name; an ACME CA issuing under it would fail the chain check
   * anyway, as its chain would not lead to our root's key. */
  return strcmp(issuer_dn, "CN=" AE_CA_INTERMEDIATE_CN) == 0 ? "internal" : "acme";
}

uint64_t ae_ca_mints(ae_ca *ca) { return (uint64_t)atomic_load(&ca->mints); }
uint64_t ae_ca_rotations(ae_ca *ca) { return (uint64_t)atomic_load(&ca->rotations); }
