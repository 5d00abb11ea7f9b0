/*
 * fuzz_spf.c - libFuzzer target for our reading of SPF records (untrusted
 * TXT data from any domain's name servers): the record count, the walk
 * through includes and redirects, the look-up count and the suggested
 * record.  The input is lines: line 0 is the TXT record of fuzz.test, line
 * N the record of nN.test, so "include:n1.test" follows into line 1.
 * libspf2's own evaluation is not fuzzed here (no egress IP given).
 *
 *   tests/fuzz/fuzz_spf -max_total_time=60 tests/fuzz/corpus/spf
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/dns.h"
#include "net/spf.h"

#define LINES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char names[LINES][16];
	struct dns_fake_rr rr[LINES];
	char *copy, *line, *save = NULL;
	struct spf_report r;
	struct dns *dns;
	struct spf_err err;
	size_t n = 0;

	if (size > 4 * DNS_TXT_MAX)
		return 0;
	copy = malloc(size + 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (line = strtok_r(copy, "\n", &save); line != NULL && n < LINES;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n == 0)
			snprintf(names[n], sizeof(names[n]), "fuzz.test");
		else
			snprintf(names[n], sizeof(names[n]), "n%zu.test", n);
		rr[n].name = names[n];
		rr[n].type = "TXT";
		rr[n].data = line;
		n++;
	}
	dns = dns_fake(rr, n);
	if (dns != NULL && spf_inspect(dns, NULL, "fuzz.test", NULL, &r, &err) == 0) {
		/* The suggestion is one record that starts as one and ends in an all. */
		if (r.suggestion[0] != '\0' && strncmp(r.suggestion, "v=spf1 ", 7) != 0)
			abort();
		if (r.n_records > 2 || r.lookups < 0)
			abort();
	}
	dns_free(dns);
	free(copy);
	return 0;
}
