/* Channel binding inputs from the TLS layer: which server names ask for a client certificate,
 * and the SHA-256 of the certificate a client presented (cnf = base64url of it). */
#include "acmedge/config.h"
#include "acmedge/tokens.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

int ae_tok_peer_cert_hash(void *session, uint8_t out[32]) {
  unsigned n = 0;
  /* For a resumed session GnuTLS returns the list of the original handshake. */
  const gnutls_datum_t *certs = gnutls_certificate_get_peers((gnutls_session_t)session, &n);
  if (!certs || n == 0 || !certs[0].data || certs[0].size == 0)
    return AE_ENOTFOUND;
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, certs[0].data, certs[0].size, out) != 0)
    return AE_ERR;
  return 0;
}
