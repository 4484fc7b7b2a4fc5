/* The service manager notification protocol (sd_notify) over $NOTIFY_SOCKET, without libsystemd. */
#ifndef ACMEDGE_SDNOTIFY_H
#define ACMEDGE_SDNOTIFY_H

#include <stdint.h>

#include "acmedge/common.h"

/* Sends state ("READY=1", "WATCHDOG=1", newline-separated assignments) as one datagram to the
 * socket named by $NOTIFY_SOCKET ("/path" or "@abstract"). Returns 1 when sent, 0 when
 * $NOTIFY_SOCKET is unset (not run by a service manager), or a negative code with err filled. */
int ae_sd_notify(const char *state, ae_err *err);

/* Reads $WATCHDOG_USEC (honouring $WATCHDOG_PID) into *usec: the watchdog interval the service
 * manager expects, or 0 when the watchdog is off for this process. Returns 0, or a negative
 * code with err filled when the variables are malformed. */
int ae_sd_watchdog_usec(uint64_t *usec, ae_err *err);

#endif
