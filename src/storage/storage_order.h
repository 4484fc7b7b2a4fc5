/* Private to the storage family: the text form of a saved order (ae_storage_order), its private
 * key sealed like every other key at rest. */
#ifndef AE_STORAGE_ORDER_H
#define AE_STORAGE_ORDER_H

#include <stddef.h>
#include "acmedge/storage.h"

/* JSON text of o (*out malloc'd, caller frees). With seal_key the certificate key is sealed under
 * "<where>|key|<fence>", so the record opens only at the place and for the holder that wrote it;
 * without (encrypt_keys false) it is stored plain. */
int ae_order_encode(const ae_storage_order *o, const unsigned char *seal_key, const char *where, char **out,
                    ae_err *err);
/* Parses text written by ae_order_encode at where into *o (caller clears it). AE_EPROTO naming
 * where for garbage, a missing field, a sealed key moved from another place (or a plain key while
 * seal_key is set). */
int ae_order_decode(const char *text, size_t len, const unsigned char *seal_key, const char *where,
                    ae_storage_order *o, ae_err *err);

#endif
