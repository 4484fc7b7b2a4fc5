/* A byte stream to a client, TLS or plain, as seen by the HTTP layers (proxy, http80).
 * The owner of the socket implements the ops; the upper layer fills the callbacks. */
#ifndef ACMEDGE_TRANSPORT_H
#define ACMEDGE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct ae_transport ae_transport;

typedef struct ae_transport_ops {
  /* Queues len bytes (copied). Returns 0 or <0 when the transport is closing. */
  int (*write)(ae_transport *t, const char *data, size_t len);
  /* Bytes queued but not yet handed to the kernel (for backpressure watermarks). */
  size_t (*write_queue_size)(ae_transport *t);
  /* Pause / resume delivery of on_read. */
  void (*read_stop)(ae_transport *t);
  void (*read_start)(ae_transport *t);
  /* Flushes queued writes, then closes (TLS: close_notify). on_close follows exactly once. */
  void (*close)(ae_transport *t);
  /* Closes at once, dropping queued writes. on_close follows exactly once. */
  void (*abort)(ae_transport *t);
} ae_transport_ops;

struct ae_transport {
  const ae_transport_ops *ops;
  uv_loop_t *loop;
  char sni[256];                 /* "" for plain or no SNI */
  int is_tls;
  struct sockaddr_storage peer;
  char peer_ip[64];              /* textual peer address */
  int local_port;
  int has_client_cert;           /* TLS: the client presented a certificate (capability tokens' cnf) */
  uint8_t client_cert_sha256[32];/* SHA-256 of its DER (leaf), set once the handshake is done */
  int alpn_h2;                   /* TLS: ALPN selected "h2" (the upper layer speaks HTTP/2) */

  /* Set by the upper layer (all may be NULL). */
  void *ud;
  /* Decrypted data; n < 0 means EOF or error (a uv error code). The buffer is only valid
   * during the call. */
  void (*on_read)(void *ud, const char *data, ssize_t n);
  /* The write queue dropped to zero. */
  void (*on_drain)(void *ud);
  /* The transport is gone: after this, t must not be touched. */
  void (*on_close)(void *ud);
};

static inline int ae_transport_write(ae_transport *t, const char *d, size_t n) { return t->ops->write(t, d, n); }
static inline size_t ae_transport_queued(ae_transport *t) { return t->ops->write_queue_size(t); }
static inline void ae_transport_read_stop(ae_transport *t) { t->ops->read_stop(t); }
static inline void ae_transport_read_start(ae_transport *t) { t->ops->read_start(t); }
static inline void ae_transport_close(ae_transport *t) { t->ops->close(t); }
static inline void ae_transport_abort(ae_transport *t) { t->ops->abort(t); }

/* Wraps an accepted uv_tcp_t as a plain transport (takes ownership of tcp, which must be
 * heap-allocated with malloc; it is closed and freed by the transport). *out is owned by the
 * transport itself and freed after on_close. */
int ae_transport_tcp_new(uv_loop_t *loop, uv_tcp_t *tcp, ae_transport **out);

#endif
