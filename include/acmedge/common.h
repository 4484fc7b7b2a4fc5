/* Shared error codes and the error-message carrier used by every module. */
#ifndef ACMEDGE_COMMON_H
#define ACMEDGE_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Functions return 0 or one of these negative codes. */
enum {
  AE_OK = 0,
  AE_ERR = -1,        /* generic failure, see message */
  AE_ENOMEM = -2,
  AE_EINVAL = -3,     /* bad input from caller, config or peer */
  AE_EIO = -4,        /* file or socket I/O failed */
  AE_ENOTFOUND = -5,
  AE_EAGAIN = -6,     /* retry later */
  AE_ETIMEDOUT = -7,
  AE_ECANCELED = -8,
  AE_EPROTO = -9,     /* protocol violation by a peer (CA, client, upstream) */
  AE_EEXIST = -10,
  AE_ELIMIT = -11     /* a configured limit was hit */
};

/* Error carrier: a code plus a human-readable message for the log. */
typedef struct ae_err {
  int code;
  char msg[512];
} ae_err;

/* Sets code and a printf-style message on err (err may be NULL); returns code. */
int ae_err_set(ae_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Returns a static string naming an AE_* code. */
const char *ae_strerror(int code);

/* Returns a malloc'd copy of s (NULL stays NULL); caller frees. Aborts on OOM. */
char *ae_strdup(const char *s);

/* malloc/calloc/realloc that abort on out-of-memory; callers free with free(). */
void *ae_malloc(size_t n);
void *ae_calloc(size_t n, size_t size);
void *ae_realloc(void *p, size_t n);

/* Case-insensitive ASCII comparison of two NUL-terminated strings; 0 when equal. */
int ae_strcasecmp(const char *a, const char *b);

/* Reads a whole file into a malloc'd NUL-terminated buffer (caller frees); caps at max bytes. */
int ae_read_file(const char *path, size_t max, char **out, size_t *len, ae_err *err);

/* ae_read_file_ex flags. */
enum {
  /* Only a regular file: anything else (directory, FIFO, device) is AE_ENOTFOUND "not a file",
   * and the open never blocks (O_NONBLOCK). The size fstat gives is trusted (one read). */
  AE_READ_REGULAR = 1,
  /* Only what the kernel has cached (path lookup and data): AE_EAGAIN when the read would wait
   * for the disk, or the kernel cannot tell. Implies AE_READ_REGULAR. */
  AE_READ_NOWAIT = 2
};
/* ae_read_file with AE_READ_* flags; caller frees *out. */
int ae_read_file_ex(const char *path, size_t max, unsigned flags, char **out, size_t *len, ae_err *err);

/* Writes data atomically: temp file in the same dir, fsync, rename, fsync dir; mode e.g. 0600. */
int ae_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, ae_err *err);

/* Like ae_write_file_atomic but only creates: AE_EEXIST (nothing written) when path exists. */
int ae_write_file_new(const char *path, const void *data, size_t len, unsigned mode, ae_err *err);

/* Creates a directory and its parents (mode 0700 for new ones). */
int ae_mkdirs(const char *path, ae_err *err);

/* Monotonic milliseconds. */
uint64_t ae_now_ms(void);

/* Formats a UNIX time as RFC 3339 UTC ("2026-01-02T03:04:05Z") into buf (>= 32 bytes). */
void ae_time_rfc3339(int64_t t, char *buf, size_t len);

/* Parses an RFC 3339 timestamp into UNIX seconds; 0 on success. */
int ae_time_parse_rfc3339(const char *s, int64_t *out);

#define AE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
