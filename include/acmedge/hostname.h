/* The DNS host-name shape shared by the ClientHello parser, the on-demand policy and the config
 * checks. Pure: no allocation, no I/O, callable from any thread. */
#ifndef ACMEDGE_HOSTNAME_H
#define ACMEDGE_HOSTNAME_H

#include <stddef.h>

/* What ae_hostname_shape found, for callers that add rules of their own. */
typedef struct ae_hostname_info {
  unsigned labels;       /* number of labels */
  int all_numeric;       /* every label is digits only ("127.1") */
  int last_numeric;      /* the top-level label is digits only */
  int label_too_long;    /* on failure: a label exceeded 63 characters */
} ae_hostname_info;

/* Checks name[0..n) (no trailing dot; either case): labels of 1..63 letters, digits or hyphens,
 * no hyphen at a label's edge, at most 253 characters. Returns 0 and fills *info (may be NULL),
 * or -1. */
int ae_hostname_shape(const char *name, size_t n, ae_hostname_info *info);

/* Checks raw SNI host_name bytes name[0..n) (RFC 6066 §3: an ASCII DNS host name without a
 * trailing dot, never an IP literal). Returns 0 when the name may be looked up, else -1 with
 * *why (may be NULL) set to a static text naming the fault: "empty", "longer than 253 bytes",
 * "NUL byte", "not an LDH name", "trailing dot", "empty label", "label longer than 63 bytes",
 * "hyphen at a label edge", "IP literal", "all-digit top-level label". */
int ae_hostname_sni_check(const unsigned char *name, size_t n, const char **why);

/* Writes a printable, lowercased rendition of name[0..n) into out[0..outlen) for logs and events:
 * bytes outside '!'..'~' and the backslash become "\xNN"; a rendition that does not fit ends in
 * "...". out is always NUL-terminated (outlen >= 4). */
void ae_hostname_printable(const unsigned char *name, size_t n, char *out, size_t outlen);

#endif
