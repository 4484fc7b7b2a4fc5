/* What the TLS listener calls on accept and, on a PROXY protocol listener, before the ClientHello:
 * one call each, so that the connection state machine only learns "go on" or "close". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "acmedge/config.h"
#include "acmedge/limits.h"
#include "acmedge/log.h"
#include "acmedge/metrics.h"
#include "acmedge/proxy_protocol.h"

/* Shared with the reverse proxy (src/proxy/httpmsg_heads.c): textual IP against IPs and CIDR ranges. */
int ae_ip_in_list(const char *ip, char *const *list, size_t n);

int ae_limits_accept(uv_tcp_t *tcp, int proxy_protocol, uint32_t *ticket) {
  *ticket = 0;
  if (proxy_protocol)
    return 0;
  struct sockaddr_storage peer;
  int len = sizeof(peer);
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&peer, &len) != 0)
    return 0;
  return ae_limits_admit((struct sockaddr *)&peer, ticket);
}

static int pp_refuse(const struct sockaddr_storage *peer, const char *what) {
  ae_metrics_count_label("limited", "proxy_protocol");
  ae_limits_log_refusal((const struct sockaddr *)peer, what);
  return AE_EPROTO;
}

/* Whether the sender may speak for clients: any sender when trusted_proxies is empty (the listener
 * is configured for a balancer), else only the listed ones. */
static int pp_sender_trusted(const char *ip) {
  ae_config *cfg = ae_limits_global_config();
  int ok = !cfg || cfg->ntrusted_proxies == 0 || ae_ip_in_list(ip, cfg->trusted_proxies, cfg->ntrusted_proxies);
  ae_config_free(cfg);
  return ok;
}

int ae_limits_proxy_header(uint8_t *in, size_t *in_len, int eof, struct sockaddr_storage *peer, char *peer_ip,
                           size_t peer_ip_len, uint32_t *ticket) {
  *ticket = 0;
  ae_pp_header h;
  int r = ae_pp_parse(in, *in_len, &h);
  if (r == AE_PP_NEED_MORE) {
    if (eof)
      return pp_refuse(peer, "truncated PROXY protocol header");
    return AE_EAGAIN;
  }
  if (r == AE_PP_TOO_BIG)
    return pp_refuse(peer, "PROXY protocol header too long");
  if (r != AE_PP_OK)
    return pp_refuse(peer, "no valid PROXY protocol v2 header");
  if (!pp_sender_trusted(peer_ip))
    return pp_refuse(peer, "PROXY protocol header from a peer not in trusted_proxies");
  if (h.has_addr) {
    char via[64];
    snprintf(via, sizeof(via), "%s", peer_ip);
    *peer = h.src;
    uv_ip_name((struct sockaddr *)peer, peer_ip, peer_ip_len);
    AE_DEBUG("limits", "%s: client address from the PROXY header sent by %s", peer_ip, via);
  }
  memmove(in, in + h.header_len, *in_len - h.header_len);
  *in_len -= h.header_len;
  return ae_limits_admit((struct sockaddr *)peer, ticket);
}
