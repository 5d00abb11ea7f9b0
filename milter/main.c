/*
 * m365-milter - main(): argv, configuration, logging, then daemon_run().
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/log.h"
#include "milter.h"

static void
usage_to(FILE *fp)
{
	fprintf(fp,
	        "usage: m365-milter [-dfn] [-c FILE]\n"
	        "       m365-milter -V | -h\n"
	        "  -c FILE  configuration (default %s)\n"
	        "  -n       check the configuration and exit\n"
	        "  -f       stay in the foreground, log to stderr\n"
	        "  -d       debug logging\n"
	        "  -V       print the version; -h this help\n",
	        M3_CONFIG_FILE);
}

static void
usage(void)
{
	usage_to(stderr);
}

int
main(int argc, char **argv)
{
	struct daemon_opts o = {M3_CONFIG_FILE, false};
	int check = 0, debug = 0, ch;
	struct conf *conf;

	while ((ch = getopt(argc, argv, "c:dfnhV")) != -1) {
		switch (ch) {
		case 'V':
			printf("m365-milter (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		case 'h':
			usage_to(stdout);
			return 0;
		case 'c':
			o.conf_file = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'f':
			o.foreground = true;
			break;
		case 'n':
			check = 1;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc) {
		usage();
		return 2;
	}
	log_open("m365-milter",
	         check          ? LOG_TO_STDERR
	         : o.foreground ? LOG_TO_FOREGROUND
	                        : LOG_TO_SYSLOG,
	         debug);
	conf = conf_load_logged(o.conf_file, true);
	if (conf == NULL) {
		log_errx("%s: configuration not usable", o.conf_file);
		return 1;
	}
	if (check) {
		printf("configuration OK\n");
		conf_free(conf);
		return 0;
	}
	if (conf->log_file != NULL) {
		/* Asked for: it wins over syslog and over -f's stderr. */
		if (log_to_file(conf->log_file) < 0) {
			log_err("log_file %s", conf->log_file);
			conf_free(conf);
			return 1;
		}
	}
	return daemon_run(&o, conf);
}
