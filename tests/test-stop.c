/*
 * test-stop.c: `qckpt stop`, Stop-VM for QEMU, against real QEMU running
 * the test guest: the guest is asked to power down (the observer monitor
 * sees QEMU's POWERDOWN event), QEMU is quit when the guest ignores it (the
 * test guest has no ACPI daemon), at once with --turn-off, and right after
 * the guest powers off under -no-shutdown (the test powers it off with
 * SysRq-O, which the kernel honours without any daemon).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "testutil.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 60000u

static char *registry_path;
static int vm_serial;

static struct hvm *boot(const char *const *extra)
{
	struct hvm_opts o = { .ndisks = 1, .extra_args = extra };
	char *name = fmt("stop%d", ++vm_serial);
	struct hvm *vm;
	FILE *f;

	o.name = name;
	vm = hvm_start(&o);
	free(name);
	assert_non_null(vm);
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	f = fopen(registry_path, "a");
	assert_non_null(f);
	fprintf(f, "%s unix:%s\n", hvm_name(vm), hvm_qmp_path(vm));
	fclose(f);
	return vm;
}

static bool saw_event(struct hvm *vm, const char *name)
{
	for (size_t i = 0; i < hvm_event_count(vm); i++)
		if (strcmp(hvm_event(vm, i)->name, name) == 0)
			return true;
	return false;
}

static void test_stop_quits_qemu_when_the_guest_ignores_the_power_button(void **state)
{
	struct hvm *vm = boot(NULL);
	struct run r = qckpt("stop", "--timeout", "1", hvm_name(vm), NULL);

	if (r.status != 0)
		fail_msg("status %d: %s", r.status, r.err);
	assert_non_null(strstr(r.err, "did not power down within 1 s: quitting QEMU"));
	assert_true(hvm_wait_exit(vm, WAIT_MS) >= 0);
	assert_true(saw_event(vm, "POWERDOWN"));
	run_free(&r);
	/* Stopping a VM that is not running is done already. */
	r = qckpt("stop", hvm_name(vm), NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	run_free(&r);
	hvm_free(vm);
}

static void test_stop_turn_off_quits_at_once(void **state)
{
	struct hvm *vm = boot(NULL);
	struct run r = qckpt("stop", "--turn-off", hvm_name(vm), NULL);

	if (r.status != 0)
		fail_msg("status %d: %s", r.status, r.err);
	assert_true(hvm_wait_exit(vm, WAIT_MS) >= 0);
	assert_false(saw_event(vm, "POWERDOWN"));
	run_free(&r);
	hvm_free(vm);
}

static void test_stop_quits_qemu_as_soon_as_the_guest_powers_off(void **state)
{
	static const char *const no_shutdown[] = { "-no-shutdown", NULL };
	struct hvm *vm = boot(no_shutdown);
	char *argv[] = { (char *)harness_qckpt(), "stop", "--timeout", "600",
			 (char *)hvm_name(vm), NULL };
	struct child c;

	child_start(&c, argv);
	assert_non_null(hvm_wait_event(vm, "POWERDOWN", WAIT_MS));
	/* The guest powers off (SysRq-O); -no-shutdown keeps QEMU, so it is
	 * qckpt that quits it, long before its 600 s. */
	assert_int_equal(hvm_qmp(vm, "send-key", json_pack(
		"{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "keys",
		"type", "qcode", "data", "alt", "type", "qcode", "data", "sysrq",
		"type", "qcode", "data", "o"), NULL), 0);
	assert_non_null(hvm_wait_event(vm, "SHUTDOWN", WAIT_MS));
	assert_int_equal(harness_run_until(child_done, &c, WAIT_MS), 0);
	if (c.status != 0)
		fail_msg("status %d: %s", c.status, c.errbuf);
	assert_null(strstr(c.errbuf, "did not power down"));
	assert_true(hvm_wait_exit(vm, WAIT_MS) >= 0);
	hvm_free(vm);
}

static void test_stop_of_an_unknown_vm_fails_naming_it(void **state)
{
	struct run r = qckpt("stop", "nosuchvm", NULL);

	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "nosuchvm"));
	assert_null(strchr(strchr(r.err, '\n') + 1, '\n')); /* one line */
	run_free(&r);
}

static int setup(void **state)
{
	registry_path = harness_path("registry");
	setenv("QCKPT_REGISTRY", registry_path, 1);
	fclose(fopen(registry_path, "w"));
	return 0;
}

static int teardown(void **state)
{
	free(registry_path);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_quits_qemu_when_the_guest_ignores_the_power_button),
		cmocka_unit_test(test_stop_turn_off_quits_at_once),
		cmocka_unit_test(test_stop_quits_qemu_as_soon_as_the_guest_powers_off),
		cmocka_unit_test(test_stop_of_an_unknown_vm_fails_naming_it),
	};
	int rc = harness_init();

	if (rc != 0)
		return rc;
	return cmocka_run_group_tests(tests, setup, teardown);
}
