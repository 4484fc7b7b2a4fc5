/* Small shared helpers: error carrier, allocation, files, time. */
#include "acmedge/common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int ae_err_set(ae_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

const char *ae_strerror(int code) {
  switch (code) {
  case AE_OK: return "ok";
  case AE_ERR: return "error";
  case AE_ENOMEM: return "out of memory";
  case AE_EINVAL: return "invalid input";
  case AE_EIO: return "I/O error";
  case AE_ENOTFOUND: return "not found";
  case AE_EAGAIN: return "try again";
  case AE_ETIMEDOUT: return "timed out";
  case AE_ECANCELED: return "canceled";
  case AE_EPROTO: return "protocol error";
  case AE_EEXIST: return "already exists";
  case AE_ELIMIT: return "limit reached";
  default: return "unknown error";
  }
}

void *ae_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fputs("acmedge: out of memory\n", stderr);
    abort();
  }
  return p;
}

void *ae_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fputs("acmedge: out of memory\n", stderr);
    abort();
  }
  return p;
}

void *ae_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fputs("acmedge: out of memory\n", stderr);
    abort();
  }
  return q;
}

char *ae_strdup(const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = ae_malloc(n);
  memcpy(d, s, n);
  return d;
}

int ae_strcasecmp(const char *a, const char *b) {
  for (;; a++, b++) {
    int ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca >= 'A' && ca <= 'Z')
      ca += 32;
    if (cb >= 'A' && cb <= 'Z')
      cb += 32;
    if (ca != cb)
      return ca - cb;
    if (!ca)
      return 0;
  }
}

static int fsync_dir_of(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    strcpy(dir, ".");
  } else if (slash == path) {
    strcpy(dir, "/");
  } else {
    size_t n = (size_t)(slash - path);
    if (n >= sizeof(dir))
      return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int r = fsync(fd);
  close(fd);
  return r;
}

/* Writes data into a fresh temp file next to path (fsync'd, created with its final mode) and
 * names it in tmp. */
static int write_temp(const char *path, const void *data, size_t len, unsigned mode, char *tmp, size_t tmpsz,
                      ae_err *err) {
  /* pid + a process-wide counter: two threads writing the same path never share a temp file. */
  static atomic_uint seq;
  int n = snprintf(tmp, tmpsz, "%s.tmp.%ld%u", path, (long)getpid(), atomic_fetch_add(&seq, 1u));
  if (n < 0 || (size_t)n >= tmpsz)
    return ae_err_set(err, AE_EINVAL, "%s: path too long", path);
  /* Created with the final mode so a private key is never readable by others, not even briefly. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
  if (fd < 0)
    return ae_err_set(err, AE_EIO, "%s: %s", tmp, strerror(errno));
  if (fchmod(fd, (mode_t)mode) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return ae_err_set(err, AE_EIO, "%s: chmod: %s", tmp, strerror(e));
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      close(fd);
      unlink(tmp);
      return ae_err_set(err, AE_EIO, "%s: write: %s", tmp, strerror(e));
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return ae_err_set(err, AE_EIO, "%s: fsync: %s", tmp, strerror(e));
  }
  close(fd);
  return 0;
}

int ae_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, ae_err *err) {
  char tmp[4200];
  int r = write_temp(path, data, len, mode, tmp, sizeof(tmp), err);
  if (r != 0)
    return r;
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return ae_err_set(err, AE_EIO, "%s: rename: %s", path, strerror(e));
  }
  if (fsync_dir_of(path) != 0)
    return ae_err_set(err, AE_EIO, "%s: fsync directory: %s", path, strerror(errno));
  return 0;
}

int ae_write_file_new(const char *path, const void *data, size_t len, unsigned mode, ae_err *err) {
  char tmp[4200];
  int r = write_temp(path, data, len, mode, tmp, sizeof(tmp), err);
  if (r != 0)
    return r;
  /* link(2), unlike rename(2), refuses an existing target: of several writers exactly one wins,
   * and nobody ever sees a partial file. */
  int lr = link(tmp, path), e = errno;
  unlink(tmp);
  if (lr != 0) {
    if (e == EEXIST)
      return ae_err_set(err, AE_EEXIST, "%s: already exists", path);
    return ae_err_set(err, AE_EIO, "%s: link: %s", path, strerror(e));
  }
  if (fsync_dir_of(path) != 0)
    return ae_err_set(err, AE_EIO, "%s: fsync directory: %s", path, strerror(errno));
  return 0;
}

int ae_mkdirs(const char *path, ae_err *err) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(buf))
    return ae_err_set(err, AE_EINVAL, "bad directory path '%s'", path);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] == '/' || buf[i] == '\0') {
      char c = buf[i];
      buf[i] = '\0';
      if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return ae_err_set(err, AE_EIO, "%s: mkdir: %s", buf, strerror(errno));
      buf[i] = c;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return ae_err_set(err, AE_EIO, "%s: not a directory", path);
  return 0;
}

uint64_t ae_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ae_time_rfc3339(int64_t t, char *buf, size_t len) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ae_time_parse_rfc3339(const char *s, int64_t *out) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!p)
    return AE_EINVAL;
  if (*p == '.') { /* fractional seconds are ignored */
    p++;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  long off = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    /* Exactly "+HH:MM"; each check stops at the terminator, so short input is never overread. */
    if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
        !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
      return AE_EINVAL;
    int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
    if (hh > 23 || mm > 59)
      return AE_EINVAL;
    off = (hh * 3600L + mm * 60L) * (*p == '+' ? 1 : -1);
    p += 6;
  } else {
    return AE_EINVAL;
  }
  if (*p)
    return AE_EINVAL;
  *out = (int64_t)timegm(&tm) - off;
  return 0;
}
