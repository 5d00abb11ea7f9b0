/*
 * window.c - sliding windows, recipient buckets and session slots.
 */
#include "config.h"

#include <string.h>

#include "window.h"

/* Drop stamps that have left the window (t <= now - W). */
static void
msg_prune(uint64_t *stamps, size_t *n, uint64_t window_ms, uint64_t now)
{
	size_t i = 0;

	if (now < window_ms)
		return;
	while (i < *n && stamps[i] <= now - window_ms)
		i++;
	if (i > 0) {
		memmove(stamps, stamps + i, (*n - i) * sizeof(*stamps));
		*n -= i;
	}
}

/* The time the stamp s frees a place: s + W, or, for a stamp still ahead of
 * now (a message in flight, counted until its sender retimes it), soon:
 * the caller looks again rather than trust a provisional time. */
static uint64_t
frees_at(uint64_t s, uint64_t window_ms, uint64_t now)
{
	return s > now ? now + WIN_POLL_MS : s + window_ms;
}

uint64_t
win_msg_count(const uint64_t *stamps, size_t n, uint64_t count, uint64_t window_ms, uint64_t now,
              uint64_t *free_at)
{
	size_t i = 0, in;

	while (now >= window_ms && i < n && stamps[i] <= now - window_ms)
		i++;
	in = n - i;
	if (free_at != NULL) {
		/* The k-th most recent must leave for a new one to fit. */
		if (in < count)
			*free_at = now;
		else
			*free_at = frees_at(stamps[n - count], window_ms, now);
	}
	return in;
}

/* insert - t into the sorted stamps[0..n), after any equal ones */
static void
insert(uint64_t *stamps, size_t n, uint64_t t)
{
	size_t i = n;

	while (i > 0 && stamps[i - 1] > t) {
		stamps[i] = stamps[i - 1];
		i--;
	}
	stamps[i] = t;
}

int
win_msg_take(uint64_t *stamps, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
             uint64_t now, uint64_t hold_ms, uint64_t *free_at)
{
	msg_prune(stamps, n, window_ms, now);
	if (*n >= count) {
		*free_at = frees_at(stamps[*n - count], window_ms, now);
		return 0;
	}
	if (*n >= cap) {
		/* Cannot happen with cap >= count; refuse rather than overflow. */
		*free_at = now + WIN_POLL_MS;
		return 0;
	}
	insert(stamps, (*n)++, now + hold_ms);
	*free_at = now + hold_ms;
	return 1;
}

int
win_msg_retime(uint64_t *stamps, size_t n, uint64_t old, uint64_t new_stamp)
{
	size_t i;

	for (i = n; i > 0; i--)
		if (stamps[i - 1] == old)
			break;
	if (i == 0)
		return 0;
	/* Take it out, put the new time in its place in the order. */
	memmove(stamps + i - 1, stamps + i, (n - i) * sizeof(*stamps));
	insert(stamps, n - 1, new_stamp);
	return 1;
}

uint64_t
win_bucket_width(uint64_t window_ms)
{
	uint64_t b = window_ms / WINDOW_BUCKETS;
	return b > 0 ? b : 1;
}

/* A bucket counts while its end is after now - W. */
static int
bucket_live(const struct bucket *b, uint64_t width, uint64_t window_ms, uint64_t now)
{
	return b->start + width + window_ms > now;
}

uint64_t
win_rcpt_sum(const struct bucket *b, size_t n, uint64_t count, uint64_t window_ms, uint64_t now,
             uint64_t *free_at)
{
	uint64_t width = win_bucket_width(window_ms), sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (bucket_live(&b[i], width, window_ms, now))
			sum += b[i].count;
	if (free_at != NULL) {
		uint64_t s = sum;
		*free_at = now;
		for (i = 0; i < n && s + 1 > count; i++) {
			if (!bucket_live(&b[i], width, window_ms, now))
				continue;
			s -= b[i].count;
			*free_at = b[i].start + width + window_ms;
		}
	}
	return sum;
}

int
win_rcpt_take(struct bucket *b, size_t *n, size_t cap, uint64_t count, uint64_t window_ms,
              uint64_t k, uint64_t now, uint64_t *free_at)
{
	uint64_t width = win_bucket_width(window_ms), sum = 0, s;
	uint64_t start = now / width * width;
	size_t i = 0, j;

	/* Drop dead buckets (oldest first). */
	while (i < *n && !bucket_live(&b[i], width, window_ms, now))
		i++;
	if (i > 0) {
		memmove(b, b + i, (*n - i) * sizeof(*b));
		*n -= i;
	}
	for (j = 0; j < *n; j++)
		sum += b[j].count;
	if (k > count) {
		*free_at = UINT64_MAX; /* never fits */
		return 0;
	}
	if (sum + k > count) {
		s = sum;
		*free_at = now;
		for (j = 0; j < *n && s + k > count; j++) {
			s -= b[j].count;
			*free_at = b[j].start + width + window_ms;
		}
		return 0;
	}
	if (*n > 0 && b[*n - 1].start >= start) {
		b[*n - 1].count += k; /* same bucket (or a clock step back) */
	} else {
		if (*n >= cap) {
			/* Merge the two oldest: counts move later, never lost. */
			b[1].count += b[0].count;
			memmove(b, b + 1, (*n - 1) * sizeof(*b));
			(*n)--;
		}
		b[*n].start = start;
		b[*n].count = k;
		(*n)++;
	}
	*free_at = now;
	return 1;
}

static bool
same_holder(const struct holder *a, const struct holder *b)
{
	return a->boot == b->boot && a->pid == b->pid && a->start == b->start;
}

int
win_slot_take(struct holder *h, size_t *n, size_t cap, uint64_t max, const struct holder *me,
              bool (*alive)(const struct holder *))
{
	size_t i = 0, j = 0;

	for (i = 0; i < *n; i++)
		if (!same_holder(&h[i], me) && alive(&h[i]))
			h[j++] = h[i];
		else if (same_holder(&h[i], me))
			h[j++] = h[i]; /* already ours: keep it once */
	*n = j;
	for (i = 0; i < *n; i++)
		if (same_holder(&h[i], me))
			return 1;
	if (*n >= max || *n >= cap)
		return 0;
	h[(*n)++] = *me;
	return 1;
}

int
win_slot_release(struct holder *h, size_t *n, const struct holder *me)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		if (same_holder(&h[i], me)) {
			memmove(h + i, h + i + 1, (*n - i - 1) * sizeof(*h));
			(*n)--;
			return 1;
		}
	}
	return 0;
}

uint64_t
win_slot_count(const struct holder *h, size_t n, bool (*alive)(const struct holder *))
{
	uint64_t c = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (alive(&h[i]))
			c++;
	return c;
}
