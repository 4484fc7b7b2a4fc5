/* The "storage" config section's backend choice: "type" and the "redis" object (design §9).
 * Secrets are read here, at parse time, so `acmedge check` finds an unreadable, world-readable or
 * malformed key file before anything starts. */
#include "acmedge/config.h"
#include "acmedge/storage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <nettle/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECRET_MAX 4096

static const char *const k_redis[] = {"address", "db", "password_file", "prefix", "key_file", "encrypt_keys",
                                      "lock_lease_ms", NULL};

__attribute__((format(printf, 4, 5))) static int fail(ae_err *err, const char *file, const char *field,
                                                      const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return ae_err_set(err, AE_EINVAL, "%s: storage.%s: %s", file, field, msg);
}

static int opt_string(json_t *o, const char *key, const char *file, char **dst, ae_err *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v) || json_string_length(v) == 0) {
    char f[64];
    snprintf(f, sizeof(f), "redis.%s", key);
    return fail(err, file, f, "expected a non-empty string");
  }
  free(*dst);
  *dst = ae_strdup(json_string_value(v));
  return 0;
}

static int opt_uint(json_t *o, const char *key, const char *file, unsigned min, unsigned max, unsigned *dst,
                    ae_err *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min || json_integer_value(v) > (json_int_t)max) {
    char f[64], range[64];
    snprintf(f, sizeof(f), "redis.%s", key);
    snprintf(range, sizeof(range), "%u..%u", min, max);
    return fail(err, file, f, "expected an integer in %s", range);
  }
  *dst = (unsigned)json_integer_value(v);
  return 0;
}

/* "ip:port", "[v6]:port" or "unix:/path"; host names are refused because hiredis resolves them
 * with a blocking getaddrinfo on the event loop. */
static int parse_address(ae_storage_redis_cfg *r, const char *file, ae_err *err) {
  const char *a = r->address;
  if (strncmp(a, "unix:", 5) == 0) {
    if (a[5] != '/')
      return fail(err, file, "redis.address", "'%s': a Unix socket needs an absolute path (unix:/path)", a);
    r->unix_path = ae_strdup(a + 5);
    return 0;
  }
  const char *colon = strrchr(a, ':');
  if (!colon || colon == a)
    return fail(err, file, "redis.address", "'%s': expected \"ip:port\" or \"unix:/path\"", a);
  char host[64];
  const char *h = a;
  size_t hlen = (size_t)(colon - a);
  if (a[0] == '[' && colon[-1] == ']') {
    h = a + 1;
    hlen -= 2;
  }
  if (hlen == 0 || hlen >= sizeof(host))
    return fail(err, file, "redis.address", "'%s': bad host", a);
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  unsigned char buf[16];
  if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
    return fail(err, file, "redis.address", "'%s': the host must be a numeric IP address", a);
  char *end = NULL;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || !end || *end || colon[1] == '\0' || port < 1 || port > 65535)
    return fail(err, file, "redis.address", "'%s': bad port", a);
  r->host = ae_strdup(host);
  r->port = (int)port;
  return 0;
}

static int read_password(ae_storage_redis_cfg *r, const char *path, const char *file, ae_err *err) {
  char *data = NULL;
  size_t len = 0;
  ae_err e = {0};
  if (ae_read_file(path, SECRET_MAX, &data, &len, &e) != 0)
    return fail(err, file, "redis.password_file", "%s", e.msg);
  size_t n = strcspn(data, "\r\n");
  data[n] = '\0';
  if (n == 0) {
    free(data);
    return fail(err, file, "redis.password_file", "'%s' is empty", path);
  }
  r->password = data;
  return 0;
}

/* 32 raw bytes, or their standard base64 on one line. */
static int read_key(ae_storage_redis_cfg *r, const char *path, const char *file, ae_err *err) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    return fail(err, file, "redis.key_file", "'%s': %s", path, strerror(errno));
  }
  if (sb.st_mode & 077)
    return fail(err, file, "redis.key_file", "'%s' is readable by other users: chmod 600 it", path);
  char *data = NULL;
  size_t len = 0;
  ae_err e = {0};
  if (ae_read_file(path, SECRET_MAX, &data, &len, &e) != 0)
    return fail(err, file, "redis.key_file", "%s", e.msg);
  int ok = 0;
  if (len == 32) {
    memcpy(r->key, data, 32);
    ok = 1;
  } else {
    size_t n = strcspn(data, "\r\n");
    struct base64_decode_ctx ctx;
    uint8_t out[64];
    size_t outlen = sizeof(out);
    base64_decode_init(&ctx);
    if (n > 0 && n < 80 && base64_decode_update(&ctx, &outlen, out, n, data) && base64_decode_final(&ctx) &&
        outlen == 32) {
      memcpy(r->key, out, 32);
      ok = 1;
    }
    memset(out, 0, sizeof(out));
  }
  memset(data, 0, len);
  free(data);
  if (!ok)
    return fail(err, file, "redis.key_file", "'%s': expected 32 random bytes (raw or base64 on one line)", path);
  return 0;
}

static int parse_redis(const char *file, json_t *o, ae_storage_redis_cfg *r, ae_err *err) {
  const char *key;
  json_t *v;
  json_object_foreach(o, key, v) {
    int known = 0;
    for (size_t i = 0; k_redis[i]; i++)
      known |= strcmp(k_redis[i], key) == 0;
    if (!known) {
      char f[300];
      snprintf(f, sizeof(f), "redis.%.200s", key);
      return fail(err, file, f, "unknown key");
    }
  }
  int rc;
  char *pwfile = NULL, *keyfile = NULL;
  if ((rc = opt_string(o, "address", file, &r->address, err)) || (rc = opt_string(o, "prefix", file, &r->prefix, err)) ||
      (rc = opt_uint(o, "db", file, 0, 15, &r->db, err)) ||
      (rc = opt_uint(o, "lock_lease_ms", file, 1000, 600000, &r->lock_lease_ms, err)) ||
      (rc = opt_string(o, "password_file", file, &pwfile, err)) || (rc = opt_string(o, "key_file", file, &keyfile, err)))
    goto out;
  json_t *ek = json_object_get(o, "encrypt_keys");
  if (ek && !json_is_null(ek)) {
    if (!json_is_boolean(ek)) {
      rc = fail(err, file, "redis.encrypt_keys", "expected true or false");
      goto out;
    }
    r->encrypt_keys = json_is_true(ek);
  }
  for (const char *p = r->prefix; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
          *p == '.') ||
        p - r->prefix >= 64) {
      rc = fail(err, file, "redis.prefix", "'%s': use at most 64 letters, digits, '_', '-' or '.'", r->prefix);
      goto out;
    }
  }
  if ((rc = parse_address(r, file, err)))
    goto out;
  if (pwfile && (rc = read_password(r, pwfile, file, err)))
    goto out;
  if (r->encrypt_keys && !keyfile) {
    rc = fail(err, file, "redis.key_file",
              "required to encrypt private keys in Redis (head -c 32 /dev/urandom > FILE; chmod 600 FILE), "
              "or set \"encrypt_keys\": false explicitly");
    goto out;
  }
  if (r->encrypt_keys && (rc = read_key(r, keyfile, file, err)))
    goto out;
out:
  free(pwfile);
  free(keyfile);
  return rc;
}

int ae_storage_config_parse(const char *file, void *storage_json, ae_config *cfg, ae_err *err) {
  json_t *o = storage_json;
  json_t *t = json_object_get(o, "type");
  if (t && !json_is_null(t)) {
    if (!json_is_string(t) || (strcmp(json_string_value(t), "fs") != 0 && strcmp(json_string_value(t), "redis") != 0))
      return ae_err_set(err, AE_EINVAL, "%s: storage.type: expected \"fs\" or \"redis\"", file);
    cfg->storage_redis = strcmp(json_string_value(t), "redis") == 0;
  }
  json_t *ro = json_object_get(o, "redis");
  if (ro && !json_is_null(ro) && !json_is_object(ro))
    return ae_err_set(err, AE_EINVAL, "%s: storage.redis: expected an object", file);
  if (!cfg->storage_redis)
    return 0; /* a redis object next to type "fs" is kept for later, not checked */
  ae_storage_redis_cfg *r = ae_calloc(1, sizeof(*r));
  r->address = ae_strdup("127.0.0.1:6379");
  r->prefix = ae_strdup("acmedge");
  r->encrypt_keys = 1;
  r->lock_lease_ms = 15000;
  cfg->redis = r;
  json_t *empty = ro && json_is_object(ro) ? NULL : json_object();
  int rc = parse_redis(file, empty ? empty : ro, r, err);
  json_decref(empty);
  return rc;
}

void ae_storage_config_free(ae_config *cfg) {
  ae_storage_redis_cfg *r = cfg->redis;
  if (!r)
    return;
  free(r->address);
  free(r->host);
  free(r->unix_path);
  if (r->password) {
    memset(r->password, 0, strlen(r->password));
    free(r->password);
  }
  free(r->prefix);
  memset(r->key, 0, sizeof(r->key));
  free(r);
  cfg->redis = NULL;
}
