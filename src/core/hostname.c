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

/* The fault of a name ae_hostname_shape refused, found by walking its labels again. */
static const char *shape_fault(const unsigned char *name, size_t n) {
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && name[i] != '.')
      continue;
    size_t len = i - start;
    if (len == 0)
      return "empty label";
    if (len > 63)
      return "label longer than 63 bytes";
    if (name[start] == '-' || name[i - 1] == '-')
      return "hyphen at a label edge";
    start = i + 1;
  }
  return "not an LDH name";
}

int ae_hostname_sni_check(const unsigned char *name, size_t n, const char **why) {
  const char *fault = NULL;
  int colons = 0, non_ldh = 0;
  ae_hostname_info info;
  for (size_t i = 0; name && i < n; i++) {
    if (name[i] == '\0' && !fault)
      fault = "NUL byte";
    colons += name[i] == ':';
    non_ldh |= !is_ldh(name[i]) && name[i] != '.';
  }
  if (!name || n == 0)
    fault = "empty";
  else if (n > 253)
    fault = "longer than 253 bytes";
  else if (fault) {
    /* the NUL byte found above */
  } else if (name[n - 1] == '.')
    fault = "trailing dot"; /* RFC 6066 §3: "without a trailing dot" */
  else if (colons >= 2 || (n > 1 && name[0] == '[' && name[n - 1] == ']'))
    fault = "IP literal";
  else if (non_ldh)
    fault = "not an LDH name";
  else if (ae_hostname_shape((const char *)name, n, &info) != 0)
    fault = shape_fault(name, n);
  else if (info.all_numeric) /* "1.2.3.4", "127.1" */
    fault = "IP literal";
  else if (info.last_numeric) /* no top-level label is all digits (RFC 3696 §2) */
    fault = "all-digit top-level label";
  if (why)
    *why = fault;
  return fault ? -1 : 0;
}

static int printable_plain(unsigned char c) { return c >= '!' && c <= '~' && c != '\\'; }

void ae_hostname_printable(const unsigned char *name, size_t n, char *out, size_t outlen) {
  static const char hex[] = "0123456789abcdef";
  out[0] = '\0';
  if (!name || outlen < 4)
    return;
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += printable_plain(name[i]) ? 1 : 4;
  /* When everything does not fit, stop early enough to leave room for "...". */
  size_t room = total < outlen ? outlen - 1 : outlen - 4;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = name[i];
    int plain = printable_plain(c);
    if (k + (plain ? 1u : 4u) > room)
      break;
    if (plain) {
      out[k++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    } else {
      out[k++] = '\\';
      out[k++] = 'x';
      out[k++] = hex[c >> 4];
      out[k++] = hex[c & 15];
    }
  }
  if (total >= outlen) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = '\0';
}
