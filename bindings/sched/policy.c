/* policy.c - the scheduling policy (see policy.h). */
#include <math.h>
#include <string.h>

#include "policy.h"

int sched_capacity(int capacity, double allocation_ratio, int cores)
{
	if (capacity > 0)
		return capacity;
	int c = (int)floor(allocation_ratio * cores + 1e-9);
	return c > 0 ? c : 1;
}

int sched_feasible(const struct sched_node *n, int units)
{
	if (!n->alive)
		return 0;
	if (n->parallel > 0 && n->running >= n->parallel)
		return 0;
	return n->capacity - n->used >= units;
}

static int id_less(const struct sched_node *a, const struct sched_node *b)
{
	return strcmp(a->id, b->id) < 0;
}

int sched_pick(const struct sched_node *nodes, int n, int units,
	       enum sched_weigher w, int order_max)
{
	int best = -1;
	for (int i = 0; i < n; i++) {
		if (!sched_feasible(&nodes[i], units))
			continue;
		if (best < 0) {
			best = i;
			continue;
		}
		if (w == SCHED_FIRST_FIT) {
			if (id_less(&nodes[i], &nodes[best]))
				best = i;
			continue;
		}
		int a = w == SCHED_INSTANCES ? nodes[i].running : nodes[i].used;
		int b = w == SCHED_INSTANCES ? nodes[best].running : nodes[best].used;
		int better = order_max ? a > b : a < b;
		if (better || (a == b && id_less(&nodes[i], &nodes[best])))
			best = i;
	}
	return best;
}

int sched_ever_feasible(const struct sched_node *nodes, int n, int units)
{
	for (int i = 0; i < n; i++)
		if (nodes[i].alive && nodes[i].capacity >= units)
			return 1;
	return 0;
}

int sched_weigher_parse(const char *name)
{
	if (!name || !*name || strcmp(name, "none") == 0 ||
	    strcmp(name, "first-fit") == 0)
		return SCHED_FIRST_FIT;
	if (strcmp(name, "instances") == 0)
		return SCHED_INSTANCES;
	if (strcmp(name, "vcpu") == 0)
		return SCHED_VCPU;
	return -1;
}
