/*
 * doctor.h - m365ctl doctor's findings, shared by its two files:
 * cmd_doctor.c (the command, DNS, SPF, MX, certificates, files, --connect)
 * and doctor_postfix.c (what Postfix must say for the gateway to work).
 */
#ifndef M3_DOCTOR_H
#define M3_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "net/dns.h"

enum level { LVL_OK, LVL_WARN, LVL_ERR };

struct finding {
	char subject[300]; /* "contoso.com", "connector relay", ... */
	char check[24];    /* "spf", "mx", "endpoint", "certificate", ... */
	enum level level;
	char text[DNS_TXT_MAX + 256];
	char fix[DNS_TXT_MAX + 256];
};

struct doctor {
	const struct conf *conf;
	struct dns *dns;
	struct finding *f;
	size_t n, cap, n_err, n_warn;
	bool oom;
};

/* doctor_add - one finding; an error or a warning is counted; fix may be NULL */
void doctor_add(struct doctor *d, enum level lvl, const char *subject, const char *check,
                const char *fix, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* check_postfix - the Postfix section (doctor_postfix.c) */
void check_postfix(struct doctor *d);

#endif
