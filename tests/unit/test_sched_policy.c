/* The scheduling policy on its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "../../bindings/sched/policy.h"

#define N(id_, cap_, par_, run_, used_) \
	{ .id = id_, .capacity = cap_, .parallel = par_, .running = run_, .used = used_, .alive = 1 }

static void test_first_fit_in_node_id_order(void **s)
{
	(void)s;
	struct sched_node nodes[] = { N("n2", 4, 0, 0, 0), N("n1", 4, 0, 0, 0), N("n3", 4, 0, 0, 0) };
	assert_int_equal(sched_pick(nodes, 3, 2, SCHED_FIRST_FIT, 0), 1);   /* n1 */
	nodes[1].used = 3;
	assert_int_equal(sched_pick(nodes, 3, 2, SCHED_FIRST_FIT, 0), 0);   /* n2 */
}

static void test_slots_and_capacity_both_gate(void **s)
{
	(void)s;
	struct sched_node one = N("n1", 8, 2, 2, 2);
	assert_false(sched_feasible(&one, 1));       /* no free slot */
	one.parallel = 0;
	assert_true(sched_feasible(&one, 6));         /* capacity only */
	assert_false(sched_feasible(&one, 7));
	one.parallel = 3;
	assert_true(sched_feasible(&one, 6));
	one.alive = 0;
	assert_false(sched_feasible(&one, 1));
}

static void test_weighers_and_order(void **s)
{
	(void)s;
	struct sched_node nodes[] = { N("a", 8, 0, 3, 2), N("b", 8, 0, 1, 6), N("c", 8, 0, 1, 4) };
	assert_int_equal(sched_pick(nodes, 3, 1, SCHED_INSTANCES, 0), 1);   /* b: 1 running, id before c */
	assert_int_equal(sched_pick(nodes, 3, 1, SCHED_INSTANCES, 1), 0);   /* a: most running */
	assert_int_equal(sched_pick(nodes, 3, 1, SCHED_VCPU, 0), 0);        /* a: 2 used */
	assert_int_equal(sched_pick(nodes, 3, 1, SCHED_VCPU, 1), 1);        /* b: 6 used */
	assert_int_equal(sched_pick(nodes, 3, 3, SCHED_VCPU, 1), 2);        /* b cannot hold 3 */
}

static void test_head_of_line_blocking(void **s)
{
	(void)s;
	struct sched_node nodes[] = { N("n1", 4, 0, 1, 3), N("n2", 2, 0, 0, 0) };
	/* the head needs 4: nobody can take it now, though n1 could later */
	assert_int_equal(sched_pick(nodes, 2, 4, SCHED_FIRST_FIT, 0), -1);
	assert_true(sched_ever_feasible(nodes, 2, 4));
	/* a head larger than every node blocks for good */
	assert_false(sched_ever_feasible(nodes, 2, 5));
}

static void test_capacity_from_allocation_ratio(void **s)
{
	(void)s;
	assert_int_equal(sched_capacity(0, 1.25, 2), 2);
	assert_int_equal(sched_capacity(0, 1.5, 4), 6);
	assert_int_equal(sched_capacity(0, 1.0, 16), 16);
	assert_int_equal(sched_capacity(6, 1.5, 4), 6);
	assert_int_equal(sched_capacity(0, 0.1, 2), 1);
	assert_int_equal(sched_weigher_parse("instances"), SCHED_INSTANCES);
	assert_int_equal(sched_weigher_parse(""), SCHED_FIRST_FIT);
	assert_int_equal(sched_weigher_parse("fastest"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_fit_in_node_id_order),
		cmocka_unit_test(test_slots_and_capacity_both_gate),
		cmocka_unit_test(test_weighers_and_order),
		cmocka_unit_test(test_head_of_line_blocking),
		cmocka_unit_test(test_capacity_from_allocation_ratio),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
