/* Private to the HTTP client family (httpc.c, httpc_headers.c). */
#ifndef AE_HTTPC_INT_H
#define AE_HTTPC_INT_H

#include <stddef.h>

/* 1 when the namelen bytes at line equal name, ignoring ASCII case. */
int ae_httpc_name_is(const char *line, size_t namelen, const char *name);

/* 1 when s holds a control byte (< 0x20 or DEL): such bytes never go into a request line. */
int ae_httpc_has_ctl(const char *s);

#endif
