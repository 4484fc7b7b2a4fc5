/* One definition of a DNS host name's shape (RFC 1123 §2.1 LDH labels). */
#include "acmedge/hostname.h"

#include <string.h>

static int is_ldh(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

int ae_hostname_shape(const char *name, size_t n, ae_hostname_info *info) {
  ae_hostname_info local;
  if (!info)
    info = &local;
  memset(info, 0, sizeof(*info));
  if (!name || n == 0 || n > 253)
    return -1;
  info->all_numeric = 1;
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && name[i] != '.') {
      if (!is_ldh((unsigned char)name[i]))
        return -1;
      continue;
    }
    size_t len = i - start;
    if (len == 0)
      return -1;
    if (len > 63) {
      info->label_too_long = 1;
      return -1;
    }
    if (name[start] == '-' || name[i - 1] == '-')
      return -1;
    int numeric = 1;
    for (size_t j = start; j < i; j++)
      if (name[j] < '0' || name[j] > '9')
        numeric = 0;
    if (!numeric)
      info->all_numeric = 0;
    info->last_numeric = numeric;
    info->labels++;
    start = i + 1;
  }
  return 0;
}
