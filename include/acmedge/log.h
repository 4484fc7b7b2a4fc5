/* Leveled, subsystem-tagged log lines to stderr (text or JSON lines), with a replaceable sink. */
#ifndef ACMEDGE_LOG_H
#define ACMEDGE_LOG_H

typedef enum { AE_LOG_DEBUG = 0, AE_LOG_INFO, AE_LOG_WARN, AE_LOG_ERROR } ae_log_level;

/* Receives each formatted line (no trailing newline); used by tests to capture logs. */
typedef void (*ae_log_sink_fn)(void *ud, ae_log_level level, const char *line);

/* Sets the minimum level written. Thread-safe. */
void ae_log_set_level(ae_log_level level);
/* Selects JSON-lines output (1) or text (0). */
void ae_log_set_json(int json);
/* Parses "debug|info|warn|error" into *out; 0 on success. */
int ae_log_level_parse(const char *s, ae_log_level *out);
/* Replaces the sink (NULL restores stderr). */
void ae_log_set_sink(ae_log_sink_fn fn, void *ud);
/* Returns 1 when a line at level would be written. */
int ae_log_enabled(ae_log_level level);

/* Writes one line tagged with subsystem sub. */
void ae_log(ae_log_level level, const char *sub, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes an already-built JSON object (text form) as a structured line: in JSON mode its
 * fields are merged into the log object, in text mode it is appended after msg. */
void ae_log_structured(ae_log_level level, const char *sub, const char *msg, const char *json_object);

#define AE_DEBUG(sub, ...) do { if (ae_log_enabled(AE_LOG_DEBUG)) ae_log(AE_LOG_DEBUG, sub, __VA_ARGS__); } while (0)
#define AE_INFO(sub, ...) ae_log(AE_LOG_INFO, sub, __VA_ARGS__)
#define AE_WARN(sub, ...) ae_log(AE_LOG_WARN, sub, __VA_ARGS__)
#define AE_ERROR(sub, ...) ae_log(AE_LOG_ERROR, sub, __VA_ARGS__)

#endif
