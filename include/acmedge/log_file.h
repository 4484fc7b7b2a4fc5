/* Log output to a file that can be reopened after rotation (SIGUSR1). */
#ifndef ACMEDGE_LOG_FILE_H
#define ACMEDGE_LOG_FILE_H

#include "acmedge/common.h"

/* Opens path for appending (created 0640) and makes it the process's stderr, where log lines
 * go; calling it again with the same path after the file was moved starts a new file. Earlier
 * lines stay in the old file. Returns 0, or a negative code with err naming the path. */
int ae_log_file_open(const char *path, ae_err *err);

#endif
