/* Process wiring: builds every module from a config snapshot, runs the loop, handles signals. */
#ifndef ACMEDGE_APP_H
#define ACMEDGE_APP_H

/* Runs the proxy with the config at path until SIGTERM/SIGINT. Returns the process exit code
 * (0 after a clean drain, 1 on a bad config or a failed start, with the reason logged). */
int ae_app_run(const char *config_path);

#endif
