/* PROXY protocol version 2 (HAProxy's binary header sent by load balancers such as HAProxy and
 * AWS NLB before the client's bytes): a pure parser, no I/O. */
#ifndef ACMEDGE_PROXY_PROTOCOL_H
#define ACMEDGE_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Fixed part: 12-byte signature, version/command, family/protocol, 16-bit length. */
#define AE_PP_FIXED_LEN 16
/* Largest header accepted (addresses plus TLVs); a longer one is refused, not buffered. */
#define AE_PP_MAX_LEN 2048

enum {
  AE_PP_OK = 0,
  AE_PP_NEED_MORE = 1,   /* a valid prefix: read more bytes */
  AE_PP_INVALID = -1,    /* wrong signature, version, command, family or lengths */
  AE_PP_TOO_BIG = -2     /* declared length over AE_PP_MAX_LEN */
};

typedef struct ae_pp_header {
  size_t header_len;             /* bytes to consume; the client's data follows */
  int local;                     /* LOCAL command (the balancer's own health check) */
  int has_addr;                  /* src/dst filled (PROXY over TCP/IPv4 or IPv6) */
  struct sockaddr_storage src;   /* the client, as the balancer saw it */
  struct sockaddr_storage dst;
} ae_pp_header;

/* Parses a PROXY v2 header at the start of buf. AE_PP_OK fills *out (TLVs are checked for framing
 * and skipped); AE_PP_NEED_MORE when buf is a valid but short prefix; negative when invalid. */
int ae_pp_parse(const uint8_t *buf, size_t len, ae_pp_header *out);

#endif
