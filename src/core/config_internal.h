/* Private helpers shared by config.c and config_validate.c (not a public API). */
#ifndef ACMEDGE_CONFIG_INTERNAL_H
#define ACMEDGE_CONFIG_INTERNAL_H

#include <stddef.h>

/* 1 when s is an IPv4 or IPv6 literal (no brackets). */
int ae_cfg_is_ip(const char *s);
/* 1 when host is a loopback address (127.0.0.0/8, ::1) or "localhost". */
int ae_cfg_is_loopback(const char *host);
/* 1 when s is a syntactically valid DNS host name (LDH labels, 1..63 each, <= 253 total). */
int ae_cfg_valid_hostname(const char *s);
/* 1 when s is a host pattern: "*", "*.suffix" with a valid host name suffix, or a host name. */
int ae_cfg_valid_pattern(const char *s);
/* Checks an absolute http(s) URL; https always allowed, http only when allow_http is 1 or
 * (allow_http is 2 and the host is loopback). 0 when acceptable. */
int ae_cfg_check_url(const char *url, int allow_http);
/* Checks that path is a readable regular file: 0 ok, AE_ENOTFOUND when it does not exist,
 * AE_EIO otherwise; problem receives a short reason ("Permission denied", "not a regular file"). */
int ae_cfg_check_readable(const char *path, char *problem, size_t len);
/* Checks that path is an executable regular file: 0 ok, <0 with a short reason in problem. */
int ae_cfg_check_executable(const char *path, char *problem, size_t len);
/* 1 when s looks like an event type name (design §6): [a-z][a-z0-9_]*, at most 64 chars. */
int ae_cfg_valid_event_type(const char *s);

#endif
