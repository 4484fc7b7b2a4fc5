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

#endif
