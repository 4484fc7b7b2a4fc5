/* Client subcommands that talk to a running acmedge through its admin API. */
#ifndef ACMEDGE_CLI_H
#define ACMEDGE_CLI_H

/* `acmedge events [--admin ADDR] [--json] [--since ID]`: follows the event stream; returns the exit code.
 * argv[0] is "events". */
int ae_cli_events(int argc, char **argv);
/* `acmedge domains [--admin ADDR] [--json]`: prints the managed domains table; returns the exit code.
 * argv[0] is "domains". */
int ae_cli_domains(int argc, char **argv);
/* `acmedge domains [--watch [SECONDS]] ...`: ae_cli_domains once, or redrawn every SECONDS
 * (default 2) until SIGINT/SIGTERM; returns the exit code. argv[0] is "domains". */
int ae_cli_domains_main(int argc, char **argv);

/* `acmedge revoke NAME [--reason R] [--admin ADDR]`: revokes NAME's certificate through the admin
 * API; returns the exit code. argv[0] is "revoke". */
int ae_cli_revoke(int argc, char **argv);
#endif
