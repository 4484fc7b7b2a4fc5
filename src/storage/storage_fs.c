/* Filesystem storage backend (design §7) and the naming helpers of the storage layout.
 *
 * Keys map one-to-one onto paths below the root. They are validated before touching the
 * filesystem so that no key can escape the root: relative, no empty, "." or ".." components, no
 * control bytes. Values are written with ae_write_file_atomic (temp file, fsync, rename, fsync
 * directory), so a reader sees the old or the new value, never a torn one. */
#include "acmedge/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_PATH_MAX 4096
#define FS_VALUE_MAX (16 * 1024 * 1024)
#define FS_DEL_DEPTH 16

typedef struct fs_storage {
  ae_storage base; /* first, see storage.h */
  char *root;
} fs_storage;

/* Checks a key. dir_ok: a trailing '/' is allowed (directory key); empty_ok: "" means the root. */
static int key_valid(const char *key, int dir_ok, int empty_ok) {
  if (!key)
    return 0;
  size_t n = strlen(key);
  if (n == 0)
    return empty_ok;
  if (key[0] == '/')
    return 0;
  if (key[n - 1] == '/') {
    if (!dir_ok)
      return 0;
    n--;
    if (n == 0)
      return 0;
  }
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && (unsigned char)key[i] < 0x20)
      return 0;
    if (i < n && key[i] == 0x7f)
      return 0;
    if (i == n || key[i] == '/') {
      size_t clen = i - start;
      if (clen == 0)
        return 0;
      if (clen == 1 && key[start] == '.')
        return 0;
      if (clen == 2 && key[start] == '.' && key[start + 1] == '.')
        return 0;
      start = i + 1;
    }
  }
  return 1;
}

static int full_path(const fs_storage *fs, const char *key, char *buf, size_t len, ae_err *err) {
  size_t klen = strlen(key);
  /* Strip the directory marker so the path names the directory itself. */
  if (klen > 0 && key[klen - 1] == '/')
    klen--;
  int n = klen ? snprintf(buf, len, "%s/%.*s", fs->root, (int)klen, key) : snprintf(buf, len, "%s", fs->root);
  if (n < 0 || (size_t)n >= len)
    return ae_err_set(err, AE_EINVAL, "storage key '%s': path too long", key);
  return 0;
}

/* Validates a file key (no directory marker) and maps it to its path under the root. */
static int file_path(ae_storage *st, const char *key, char *path, size_t len, ae_err *err) {
  if (!key_valid(key, 0, 0))
    return ae_err_set(err, AE_EINVAL, "invalid storage key '%s'", key ? key : "(null)");
  return full_path((fs_storage *)st, key, path, len, err);
}

static int fs_put(ae_storage *st, const char *key, const void *data, size_t len, int private_, ae_err *err) {
  char path[FS_PATH_MAX];
  int rc = file_path(st, key, path, sizeof(path), err);
  if (rc < 0)
    return rc;
  char *slash = strrchr(path, '/');
  *slash = '\0';
  rc = ae_mkdirs(path, err);
  *slash = '/';
  if (rc < 0)
    return rc;
  return ae_write_file_atomic(path, data, len, private_ ? 0600 : 0644, err);
}

/* One open, one fstat and one read (ae_read_file_ex): this runs on the first handshake of every
 * stored name that is not in memory. A FIFO planted at the path neither blocks the open nor is
 * read: it is refused as not a file. */
static int fs_get(ae_storage *st, const char *key, char **data, size_t *len, ae_err *err) {
  char path[FS_PATH_MAX];
  int rc = file_path(st, key, path, sizeof(path), err);
  if (rc < 0)
    return rc;
  return ae_read_file_ex(path, FS_VALUE_MAX, AE_READ_REGULAR, data, len, err);
}

/* fs_get from the kernel's caches only: AE_EAGAIN when the lookup or the data would wait for the
 * disk (the caller then reads in the thread pool). */
static int fs_get_nowait(ae_storage *st, const char *key, char **data, size_t *len, ae_err *err) {
  char path[FS_PATH_MAX];
  int rc = file_path(st, key, path, sizeof(path), err);
  if (rc < 0)
    return rc;
  return ae_read_file_ex(path, FS_VALUE_MAX, AE_READ_NOWAIT, data, len, err);
}

/* Removes everything below the open directory dfd (which is closed). Symlinks are unlinked,
 * never followed. */
static int remove_tree_at(int dfd, int depth, const char *path, ae_err *err) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(e));
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de)
      break;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    struct stat sb;
    if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      rc = ae_err_set(err, AE_EIO, "%s/%s: %s", path, de->d_name, strerror(errno));
      break;
    }
    if (S_ISDIR(sb.st_mode)) {
      if (depth >= FS_DEL_DEPTH) {
        rc = ae_err_set(err, AE_ELIMIT, "%s: directory tree too deep", path);
        break;
      }
      int cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) {
        rc = ae_err_set(err, AE_EIO, "%s/%s: %s", path, de->d_name, strerror(errno));
        break;
      }
      rc = remove_tree_at(cfd, depth + 1, path, err);
      if (rc < 0)
        break;
      if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0) {
        rc = ae_err_set(err, AE_EIO, "%s/%s: rmdir: %s", path, de->d_name, strerror(errno));
        break;
      }
    } else if (unlinkat(dirfd(d), de->d_name, 0) != 0) {
      rc = ae_err_set(err, AE_EIO, "%s/%s: unlink: %s", path, de->d_name, strerror(errno));
      break;
    }
  }
  closedir(d);
  return rc;
}

static void fsync_parent(char *path) {
  char *slash = strrchr(path, '/');
  if (!slash)
    return;
  *slash = '\0';
  int fd = open(slash == path ? "/" : path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *slash = '/';
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

static int fs_del(ae_storage *st, const char *key, ae_err *err) {
  fs_storage *fs = (fs_storage *)st;
  if (!key_valid(key, 1, 0))
    return ae_err_set(err, AE_EINVAL, "invalid storage key '%s'", key ? key : "(null)");
  char path[FS_PATH_MAX];
  int rc = full_path(fs, key, path, sizeof(path), err);
  if (rc < 0)
    return rc;
  int is_dir = key[strlen(key) - 1] == '/';
  struct stat sb;
  if (lstat(path, &sb) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return ae_err_set(err, AE_ENOTFOUND, "%s: not found", path);
    return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(errno));
  }
  if (is_dir) {
    if (!S_ISDIR(sb.st_mode))
      return ae_err_set(err, AE_EINVAL, "%s: not a directory", path);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
      return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(errno));
    rc = remove_tree_at(dfd, 0, path, err);
    if (rc < 0)
      return rc;
    if (rmdir(path) != 0)
      return ae_err_set(err, AE_EIO, "%s: rmdir: %s", path, strerror(errno));
  } else {
    if (S_ISDIR(sb.st_mode))
      return ae_err_set(err, AE_EINVAL, "%s: is a directory (use a key ending with '/')", path);
    if (unlink(path) != 0)
      return ae_err_set(err, AE_EIO, "%s: unlink: %s", path, strerror(errno));
  }
  fsync_parent(path);
  return 0;
}

/* A leftover of an interrupted atomic write: "<name>.tmp.<digits>". */
static int is_temp_leftover(const char *name) {
  const char *t = strstr(name, ".tmp.");
  if (!t || t == name)
    return 0;
  const char *p = t + 5;
  if (!*p)
    return 0;
  for (; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int fs_list(ae_storage *st, const char *prefix, char ***names, size_t *n, ae_err *err) {
  fs_storage *fs = (fs_storage *)st;
  if (!key_valid(prefix, 1, 1))
    return ae_err_set(err, AE_EINVAL, "invalid storage prefix '%s'", prefix ? prefix : "(null)");
  char path[FS_PATH_MAX];
  int rc = full_path(fs, prefix, path, sizeof(path), err);
  if (rc < 0)
    return rc;
  DIR *d = opendir(path);
  if (!d) {
    if (errno == ENOENT || errno == ENOTDIR)
      return ae_err_set(err, AE_ENOTFOUND, "%s: not found", path);
    return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(errno));
  }
  char **v = NULL;
  size_t cnt = 0, cap = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno != 0) {
        int e = errno;
        closedir(d);
        ae_storage_list_free(v, cnt);
        return ae_err_set(err, AE_EIO, "%s: %s", path, strerror(e));
      }
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 || is_temp_leftover(de->d_name))
      continue;
    if (cnt == cap) {
      cap = cap ? cap * 2 : 16;
      v = ae_realloc(v, cap * sizeof(char *));
    }
    v[cnt++] = ae_strdup(de->d_name);
  }
  closedir(d);
  if (cnt > 1)
    qsort(v, cnt, sizeof(char *), cmp_str);
  *names = v;
  *n = cnt;
  return 0;
}

static void fs_free(ae_storage *st) {
  fs_storage *fs = (fs_storage *)st;
  free(fs->root);
  free(fs);
}

static const ae_storage_ops fs_ops = {
    .put = fs_put, .get = fs_get, .get_nowait = fs_get_nowait, .del = fs_del, .list = fs_list, .free = fs_free};

int ae_storage_fs_new(const char *path, ae_storage **out, ae_err *err) {
  if (!path || !*path)
    return ae_err_set(err, AE_EINVAL, "storage path is empty");
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  if (n >= FS_PATH_MAX - 512)
    return ae_err_set(err, AE_EINVAL, "storage path too long");
  char *root = ae_malloc(n + 1);
  memcpy(root, path, n);
  root[n] = '\0';
  int rc = ae_mkdirs(root, err);
  if (rc < 0) {
    free(root);
    return rc;
  }
  fs_storage *fs = ae_calloc(1, sizeof(*fs));
  fs->base.ops = &fs_ops;
  fs->root = root;
  *out = &fs->base;
  return 0;
}

const char *ae_storage_fs_root(ae_storage *st) {
  if (!st || st->ops != &fs_ops)
    return NULL;
  return ((fs_storage *)st)->root;
}

void ae_storage_list_free(char **names, size_t n) {
  if (!names)
    return;
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* ---------- layout names ---------- */

int ae_storage_ca_host(const char *directory_url, char *buf, size_t len) {
  if (!directory_url || !buf || len == 0)
    return AE_EINVAL;
  buf[0] = '\0';
  const char *p = strstr(directory_url, "://");
  p = p ? p + 3 : directory_url;
  size_t alen = strcspn(p, "/?#");
  const char *end = p + alen;
  /* userinfo is not part of the host */
  for (const char *q = end; q > p; q--) {
    if (q[-1] == '@') {
      p = q;
      break;
    }
  }
  const char *host = p, *host_end, *port = NULL, *port_end = end;
  int v6 = 0;
  if (*p == '[') {
    host = p + 1;
    host_end = memchr(host, ']', (size_t)(end - host));
    if (!host_end)
      return AE_EINVAL;
    if (host_end + 1 < end) {
      if (host_end[1] != ':')
        return AE_EINVAL;
      port = host_end + 2;
    }
    v6 = 1;
  } else {
    host_end = memchr(p, ':', (size_t)(end - p));
    if (host_end)
      port = host_end + 1;
    else
      host_end = end;
  }
  size_t hlen = (size_t)(host_end - host);
  if (hlen == 0 || host[0] == '.')
    return AE_EINVAL;
  size_t plen = port ? (size_t)(port_end - port) : 0;
  if (port && plen == 0)
    port = NULL; /* "host:/dir" names no port */
  if (plen > 5)
    return AE_EINVAL;
  for (size_t i = 0; port && i < plen; i++)
    if (port[i] < '0' || port[i] > '9')
      return AE_EINVAL;
  size_t need = hlen + (port ? plen + 1 : 0) + 1;
  if (need > len)
    return AE_EINVAL;
  size_t o = 0;
  for (size_t i = 0; i < hlen; i++) {
    char c = host[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c + 32);
    /* ':' is not portable in a directory name; an IPv6 literal uses '-' instead. */
    if (v6 && c == ':')
      c = '-';
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || (v6 && c == '%');
    if (!ok) {
      buf[0] = '\0';
      return AE_EINVAL;
    }
    buf[o++] = c;
  }
  if (port) {
    buf[o++] = '_';
    memcpy(buf + o, port, plen);
    o += plen;
  }
  buf[o] = '\0';
  return 0;
}

#define WILDCARD_DIR_PREFIX "wildcard_"

void ae_storage_domain_dirname(const char *domain, char *buf, size_t len) {
  if (!buf || len == 0)
    return;
  if (!domain) {
    buf[0] = '\0';
    return;
  }
  if (domain[0] == '*' && domain[1] == '.')
    snprintf(buf, len, WILDCARD_DIR_PREFIX "%s", domain + 1);
  else
    snprintf(buf, len, "%s", domain);
  for (char *p = buf; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p + 32);
}

void ae_storage_dirname_domain(const char *dirname, char *buf, size_t len) {
  if (!buf || len == 0)
    return;
  if (!dirname) {
    buf[0] = '\0';
    return;
  }
  size_t pl = strlen(WILDCARD_DIR_PREFIX);
  if (strncmp(dirname, WILDCARD_DIR_PREFIX, pl) == 0 && dirname[pl] == '.')
    snprintf(buf, len, "*%s", dirname + pl);
  else
    snprintf(buf, len, "%s", dirname);
}
