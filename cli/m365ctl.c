/*
 * m365ctl - the administrator's tool: a table of subcommands.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/log.h"

static const struct command {
	const char *name;
	int (*fn)(const char *conf_file, int argc, char **argv);
	const char *usage;
	const char *help;
} commands[] = {
    {"check-config", cmd_check_config, "check-config",
     "check the configuration; print every problem with file:line"},
    {"explain", cmd_explain,
     "explain [--client IP] [--login NAME] [--cert-subject DN] "
     "--sender ADDR --rcpt ADDR... [--from VALUE] [--sender-header VALUE] "
     "[--reply-to]",
     "show what the policy decides for a submission, without sending"},
    {"doctor", cmd_doctor, "doctor [--json] [--connect]",
     "check DNS (SPF, MX), endpoints, certificates and credentials; "
     "--connect also tries each endpoint"},
    {"status", cmd_status, "status [--json] [MAILBOX]",
     "each mailbox's messages, recipients and sessions against its limits"},
    {"route-key", cmd_route_key, "route-key [--rotate]",
     "create the key that signs the route header (route_key_file), or put a new "
     "one first"},
    {"postfix-config", cmd_postfix_config, "postfix-config [--lmtp|--handoff] [main|master]",
     "print the main.cf and master.cf lines for this installation (never edits them)"},
    {"token", cmd_token, "token test APP [--mailbox ADDRESS]",
     "get an OAuth token for APP, show its claims; with --mailbox, try SMTP AUTH"},
};

static void
usage(FILE *fp)
{
	size_t i;

	fprintf(fp, "usage: m365ctl [-c FILE] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(fp, "  %-14s %s\n      m365ctl %s\n", commands[i].name, commands[i].help,
		        commands[i].usage);
	fprintf(fp, "\n-c FILE   configuration (default %s)\n", M3_CONFIG_FILE);
}

int
main(int argc, char **argv)
{
	const char *conf_file = M3_CONFIG_FILE;
	int i = 1;
	size_t k;

	log_open("m365ctl", LOG_TO_STDERR, 0);
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf_file = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
			printf("m365ctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(argv[i], commands[k].name) != 0)
			continue;
		/* "COMMAND --help": its usage and what it does, on stdout. */
		if (argc - i == 2 &&
		    (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0)) {
			printf("usage: m365ctl [-c FILE] %s\n  %s\n", commands[k].usage,
			       commands[k].help);
			return 0;
		}
		/* "-c FILE" is also accepted after the subcommand. */
		if (argc - i >= 3 && strcmp(argv[i + 1], "-c") == 0) {
			conf_file = argv[i + 2];
			argv[i + 2] = argv[i];
			i += 2;
		}
		return commands[k].fn(conf_file, argc - i, argv + i);
	}
	fprintf(stderr, "m365ctl: unknown command \"%s\"\n", argv[i]);
	usage(stderr);
	return 2;
}
