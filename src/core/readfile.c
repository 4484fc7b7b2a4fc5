/* The one whole-file reader: config and key files, and the fs storage backend's values (which
 * are read on the first handshake of a stored name, so a regular file costs one open, one fstat
 * and one read, and a cache-only variant lets the event loop try it without ever waiting on the
 * disk). */
#include "acmedge/common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* openat2 with RESOLVE_CACHED: the lookup fails with EAGAIN instead of reading directories from
 * disk. Kernels without it (or a filter refusing it) answer ENOSYS/EINVAL/EPERM: also "cannot
 * tell without waiting". */
static int open_cached(const char *path, int flags) {
#ifdef SYS_openat2
  struct open_how how = {.flags = (unsigned long long)flags, .resolve = RESOLVE_CACHED};
  long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
  if (fd < 0 && errno != ENOENT && errno != ENOTDIR && errno != EACCES && errno != ELOOP)
    errno = EAGAIN;
  return (int)fd;
#else
  (void)path;
  (void)flags;
  errno = EAGAIN;
  return -1;
#endif
}

/* One read: with nowait at off and only from the page cache (EAGAIN otherwise), else at the file
 * position (pipes and /proc files have no offsets), which the callers keep equal to off. */
static ssize_t read_at(int fd, char *buf, size_t n, off_t off, int nowait) {
  ssize_t r;
  do {
    if (nowait) {
      struct iovec iov = {.iov_base = buf, .iov_len = n};
      r = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
      if (r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL))
        errno = EAGAIN;
    } else {
      r = read(fd, buf, n);
    }
  } while (r < 0 && errno == EINTR);
  return r;
}

static int fail(int fd, char *buf, ae_err *err, int code, const char *path, const char *why) {
  free(buf);
  if (fd >= 0)
    close(fd);
  return ae_err_set(err, code, "%s: %s", path, why);
}

int ae_read_file_ex(const char *path, size_t max, unsigned flags, char **out, size_t *len, ae_err *err) {
  int nowait = (flags & AE_READ_NOWAIT) != 0;
  int regular_only = nowait || (flags & AE_READ_REGULAR);
  int oflags = O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0);
  int fd = nowait ? open_cached(path, oflags) : open(path, oflags);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || (regular_only && e == ENOTDIR))
      return ae_err_set(err, AE_ENOTFOUND, "%s: %s", path, regular_only ? "not found" : strerror(e));
    if (e == EAGAIN)
      return ae_err_set(err, AE_EAGAIN, "%s: not cached", path);
    return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(e));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0)
    return fail(fd, NULL, err, AE_EIO, path, strerror(errno));
  int regular = S_ISREG(sb.st_mode);
  if (regular_only && !regular)
    return fail(fd, NULL, err, AE_ENOTFOUND, path, "not a file");
  if (regular && (uint64_t)sb.st_size > max) {
    close(fd);
    return ae_err_set(err, AE_ELIMIT, "%s: larger than %zu bytes", path, max);
  }
  /* A regular file's size sizes the one read; a pipe or a /proc file (size 0) grows the buffer. */
  size_t size = regular ? (size_t)sb.st_size : 0;
  size_t cap = size ? size : (max < 4096 ? max : 4096), n = 0;
  char *buf = ae_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      /* Files are replaced by rename, so a storage value keeps the size fstat gave. */
      if (regular_only && size)
        break;
      if (cap >= max || (size && n == size)) {
        /* One more byte tells "exactly this size" from "more" (grown, or over max). */
        char extra;
        ssize_t r = read_at(fd, &extra, 1, (off_t)n, nowait);
        if (r == 0)
          break;
        if (r < 0)
          return fail(fd, buf, err, AE_EIO, path, strerror(errno));
        if (cap >= max) {
          free(buf);
          close(fd);
          return ae_err_set(err, AE_ELIMIT, "%s: larger than %zu bytes", path, max);
        }
        buf[n++] = extra;
      }
      cap = cap * 2 > max ? max : cap * 2;
      if (cap < n)
        cap = n;
      buf = ae_realloc(buf, cap + 1);
      if (n == cap)
        continue;
    }
    ssize_t r = read_at(fd, buf + n, cap - n, (off_t)n, nowait);
    if (r < 0) {
      int e = errno;
      return fail(fd, buf, err, e == EAGAIN ? AE_EAGAIN : AE_EIO, path, e == EAGAIN ? "not cached" : strerror(e));
    }
    if (r == 0)
      break; /* truncated in place meanwhile: what is there is what a stat-then-read would see */
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  if (len)
    *len = n;
  return 0;
}

int ae_read_file(const char *path, size_t max, char **out, size_t *len, ae_err *err) {
  return ae_read_file_ex(path, max, 0, out, len, err);
}
