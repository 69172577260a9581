/*
 * observe.c - the listener registry behind observe.h.  Written only
 * before the workers start, so reads need no lock.
 */
#include "observe/observe.h"

static struct {
	observe_fn fn;
	void *arg;
} listeners[OBSERVE_MAX_LISTENERS];
static int n_listeners;

int
observe_add_listener(observe_fn fn, void *arg)
{
	if (n_listeners == OBSERVE_MAX_LISTENERS)
		return -1;
	listeners[n_listeners].fn = fn;
	listeners[n_listeners].arg = arg;
	n_listeners++;
	return 0;
}

bool
observe_enabled(void)
{
	return n_listeners > 0;
}

void
observe_statement(const struct stmt_observation *o)
{
	for (int i = 0; i < n_listeners; i++)
		listeners[i].fn(o, listeners[i].arg);
}
