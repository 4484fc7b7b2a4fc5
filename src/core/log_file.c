/* Log file: the file descriptor is installed as stderr with dup2, so every writer of log lines
 * (any thread) switches atomically to the new file without a lock or a NULL window. */
#include "acmedge/log_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int ae_log_file_open(const char *path, ae_err *err) {
  if (!path || !*path)
    return ae_err_set(err, AE_EINVAL, "log.file: empty path");
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
  if (fd < 0)
    return ae_err_set(err, AE_EIO, "log.file: cannot open %s: %s", path, strerror(errno));
  int r;
  do {
    r = dup2(fd, STDERR_FILENO);
  } while (r < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (r < 0)
    return ae_err_set(err, AE_EIO, "log.file: cannot redirect output to %s: %s", path, strerror(e));
  return 0;
}
