/*
 * test-run.c: `qckpt run` (the launch shim) and `qckpt disks` against real
 * QEMU running the Linux test guest.  The harness starts QEMU through
 * "qckpt run NAME --" (hvm_opts.argv_prefix), so the process it watches is
 * the one qckpt exec'd.
 *
 * The guest writes its tick counter to sector 0 of every disk before it
 * prints "tick N", and at boot prints "disk vda counter=N".  So a VM
 * relaunched after two checkpoints proves it booted on the newest overlay
 * and kept the writes made after the second checkpoint when the counter
 * it reads at boot is the last one it wrote before the quit, later than
 * the one frozen at the checkpoint.  Nothing sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "util.h"

#define BOOT_MS 300000u /* only a failure waits this long; an overloaded 2-core host took over 90 s */
#define WAIT_MS 30000u

static char *registry_path, *catalog_dir;
static int serial;
/* The QEMU of the running group: NULL for the default (harness_qemu()). */
static const char *qemu_bin;
static const char *note = "launch the VM through 'qckpt run'";

static int count_lines(const char *text)
{
	int n = 0;

	for (const char *p = text; p && *p; p++)
		n += *p == '\n';
	return n;
}

static json_t *record_disk(json_t *rec)
{
	return json_array_get(json_object_get(rec, "Disks"), 0);
}

static json_t *load_vm_json(const char *name)
{
	char *path = fmt("%s/%s/vm.json", catalog_dir, name);
	json_t *st = json_load_file(path, 0, NULL);

	free(path);
	assert_non_null(st);
	return st;
}

/* The counter the guest found on vda at boot. */
static long boot_counter(struct hvm *vm)
{
	const char *key = "qckpt-guest: disk vda counter=";
	long i = hvm_wait_serial(vm, key, BOOT_MS);

	assert_true(i >= 0);
	return strtol(strstr(hvm_serial_line(vm, (size_t)i), key) + strlen(key), NULL, 10);
}

/* The image behind QEMU's block device drv0, by the observer's query-block. */
static char *qemu_image(struct hvm *vm)
{
	json_t *blocks = NULL, *b;
	size_t i;
	char *file = NULL;

	assert_int_equal(hvm_qmp(vm, "query-block", NULL, &blocks), 0);
	json_array_foreach(blocks, i, b) {
		json_t *ins = json_object_get(b, "inserted");
		const char *node = jstr(ins, "node-name");

		if (strcmp(jstr(b, "device") ? jstr(b, "device") : "", "drv0") == 0 ||
		    (node && strcmp(node, "drv0") == 0) ||
		    (jstr(b, "qdev") && strstr(jstr(b, "qdev"), "vdisk0")))
			file = strdup(jstr(ins, "file"));
	}
	json_decref(blocks);
	assert_non_null(file);
	return file;
}

/* The process is QEMU itself: the pid the harness started runs QEMU's
 * binary.  (QEMU 10's wrapper from get-qemu10 is a script that execs the
 * binary, which keeps the pid as well.) */
static void assert_pid_is_qemu(struct hvm *vm)
{
	char *link = fmt("/proc/%d/exe", (int)hvm_pid(vm));
	char exe[PATH_MAX], want[PATH_MAX];
	ssize_t n = readlink(link, exe, sizeof exe - 1);

	assert_true(n > 0);
	exe[n] = '\0';
	if (qemu_bin != NULL) {
		/* the wrapper names the binary it execs */
		char *wrapper = read_file(qemu_bin), *quoted = fmt("exec \"%s\"", exe);

		if (strstr(wrapper, quoted) == NULL)
			fail_msg("pid %d runs %s, not what %s execs", (int)hvm_pid(vm), exe, qemu_bin);
		free(quoted);
		free(wrapper);
	} else {
		assert_non_null(realpath(harness_qemu(), want));
		assert_string_equal(exe, want);
	}
	free(link);
}

/* Boot a VM through `qckpt run NAME --dir CATALOG --`. */
static struct hvm *boot_through_run(struct hvm_opts *o, const char *name,
				    const char *const *prefix_tail)
{
	const char *prefix[12] = { harness_qckpt(), "run", "--dir", catalog_dir };
	size_t n = 4;
	struct hvm *vm;

	for (; prefix_tail && *prefix_tail && n < 9; prefix_tail++)
		prefix[n++] = *prefix_tail;
	prefix[n++] = name;
	prefix[n++] = "--";
	prefix[n] = NULL;
	o->name = name;
	o->exact_name = true;
	o->argv_prefix = prefix;
	vm = hvm_start(o);
	o->argv_prefix = NULL;
	return vm;
}

/*
 * The scenario: launched through qckpt run, checkpointed twice,
 * the guest writes on, quit, relaunched with the same command line: it
 * boots on the second checkpoint's overlay with the writes made after it.
 */
static void relaunch_keeps_writes(bool blockdev, enum hvm_disk_format format)
{
	char *name = fmt("run%d", ++serial);
	struct hvm_opts o = { .ndisks = 1, .disk_format = format, .blockdev = blockdev,
			      .mem_mib = 128, .qemu = qemu_bin };
	struct hvm *vm = boot_through_run(&o, name, NULL);
	const char *disk_paths[2] = { NULL, NULL };
	json_t *a, *b, *st, *cl, *given;
	char *err_a, *err_b, *original, *image;
	long frozen, t, last, on_disk;
	size_t i;

	assert_non_null(vm);
	assert_pid_is_qemu(vm);
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	original = strdup(hvm_disk_path(vm, 0));

	a = checkpoint_ok(name, "live", "first", &err_a);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	b = checkpoint_ok(name, "live", "second", &err_b);
	/* Launched through qckpt run: no advice to launch through qckpt run. */
	assert_null(strstr(err_a, note));
	assert_null(strstr(err_b, note));
	assert_string_equal(jstr(record_disk(b), "CheckpointImage"), jstr(record_disk(a), "ActiveImage"));

	/* The guest writes on after the second checkpoint. */
	frozen = disk_read_counter(jstr(record_disk(b), "CheckpointImage"));
	assert_true(frozen > 0);
	while ((t = hvm_wait_tick(vm, WAIT_MS)) > 0 && t < frozen + 3)
		;
	assert_true(t >= frozen + 3);
	assert_int_equal(hvm_quit(vm), 0);
	last = hvm_last_tick(vm);
	on_disk = disk_read_counter(jstr(record_disk(b), "ActiveImage"));
	/* written before printed: the disk holds the last tick or the next */
	assert_true(on_disk == last || on_disk == last + 1);

	/* vm.json holds the command as given and as executed. */
	st = load_vm_json(name);
	cl = json_object_get(st, "CommandLine");
	given = json_object_get(cl, "Given");
	assert_non_null(cl);
	for (i = 0; hvm_argv(vm)[i]; i++)
		assert_string_equal(json_string_value(json_array_get(given, i)), hvm_argv(vm)[i]);
	assert_int_equal(json_array_size(given), i);
	assert_int_equal(json_integer_value(json_object_get(cl, "Pid")), hvm_pid(vm));
	json_decref(st);
	hvm_free(vm);

	/* Relaunched with the same command line (the original image). */
	disk_paths[0] = original;
	o.disk_paths = disk_paths;
	vm = boot_through_run(&o, name, NULL);
	assert_non_null(vm);
	assert_int_equal(boot_counter(vm), on_disk);
	assert_true(on_disk > frozen);
	image = qemu_image(vm);
	assert_string_equal(image, jstr(record_disk(b), "ActiveImage"));
	free(image);
	/* and it goes on counting from there, on a disk qckpt can checkpoint */
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	st = load_vm_json(name);
	cl = json_object_get(st, "CommandLine");
	{
		char *exec = json_dumps(json_object_get(cl, "Executed"), 0);

		assert_non_null(strstr(exec, jstr(record_disk(b), "ActiveImage")));
		assert_null(strstr(exec, "format=raw"));
		assert_null(strstr(exec, "driver=raw"));
		free(exec);
	}
	json_decref(st);
	hvm_free(vm);
	json_decref(a);
	json_decref(b);
	free(err_a);
	free(err_b);
	free(original);
	free(name);
}

static void test_relaunch_after_two_checkpoints_drive_qcow2(void **state)
{
	relaunch_keeps_writes(false, HVM_QCOW2);
}

static void test_relaunch_after_two_checkpoints_drive_raw_base(void **state)
{
	relaunch_keeps_writes(false, HVM_RAW);
}

static void test_relaunch_after_two_checkpoints_blockdev_raw_base(void **state)
{
	relaunch_keeps_writes(true, HVM_RAW);
}

/* qckpt run is QEMU: same pid, QEMU's exit status; it registered NAME with
 * the command's own QMP socket and -name checks out. */
static void test_run_execs_qemu_in_place_and_registers(void **state)
{
	char *name = fmt("run%d", ++serial);
	struct hvm_opts o = { .ndisks = 0, .mem_mib = 128, .qemu = qemu_bin };
	struct hvm *vm = boot_through_run(&o, name, NULL);
	json_t *res = NULL;
	FILE *f;
	char line[1024], *want;
	int found = 0;

	assert_non_null(vm);
	assert_pid_is_qemu(vm);
	assert_int_equal(hvm_qmp(vm, "query-name", NULL, &res), 0);
	assert_string_equal(jstr(res, "name"), name);
	json_decref(res);
	want = fmt("%s unix:%s dir=%s", name, hvm_qmp_path(vm), catalog_dir);
	f = fopen(registry_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof line, f))
		found |= strncmp(line, want, strlen(want)) == 0;
	fclose(f);
	if (!found)
		fail_msg("registry lacks '%s'", want);
	/* QEMU's own exit status reaches the harness: quit exits 0, a kill 128+9 */
	assert_int_equal(hvm_quit(vm), 0);
	hvm_free(vm);
	free(want);
	free(name);
}

/* ---- refusals (nothing starts: qckpt exits before the exec) ---------- */

/* A catalog for NAME with chain base.raw <- ov1 <- ov2, made with qemu-img. */
static void fake_catalog(const char *name, char **base, char **ov1, char **ov2)
{
	char *dir = fmt("%s/%s", catalog_dir, name), *path;
	json_t *st;

	*base = fmt("%s/%s-base.raw", harness_tmpdir(), name);
	*ov1 = fmt("%s/%s-ov1.qcow2", harness_tmpdir(), name);
	*ov2 = fmt("%s/%s-ov2.qcow2", harness_tmpdir(), name);
	assert_int_equal(disk_create(*base, HVM_RAW, 1), 0);
	assert_int_equal(disk_create_overlay(*ov1, *base, "raw"), 0);
	assert_int_equal(disk_create_overlay(*ov2, *ov1, "qcow2"), 0);
	mkdir(dir, 0700);
	st = json_pack("{s:s, s:[{s:s, s:s, s:s, s:s, s:s, s:[s,s,s]}]}", "Name", name, "Disks",
		       "Device", "drv0", "OriginalImage", *base, "OriginalFormat", "raw",
		       "ActiveImage", *ov2, "Format", "qcow2", "Chain", *base, *ov1, *ov2);
	path = fmt("%s/vm.json", dir);
	assert_int_equal(json_dump_file(st, path, 0), 0);
	json_decref(st);
	free(path);
	free(dir);
}

static void test_dry_run_shows_the_rewritten_command(void **state)
{
	char *name = fmt("dry%d", ++serial), *base, *ov1, *ov2, *drive, *want;
	struct run r;

	fake_catalog(name, &base, &ov1, &ov2);
	drive = fmt("file=%s,format=raw,if=virtio", base);
	r = qckpt("run", "--dir", catalog_dir, "--dry-run", name, "--", harness_qemu(),
		  "-drive", drive, "-cdrom", base, NULL);
	if (r.status != 0)
		fail_msg("dry run failed (%d): %s", r.status, r.err);
	want = fmt("-drive file=%s,format=qcow2,if=virtio -cdrom %s -name %s -chardev socket,id=qckpt-qmp,path=",
		   ov2, base, name);
	if (strstr(r.out, want) == NULL)
		fail_msg("dry run printed '%s', lacking '%s'", r.out, want);
	assert_non_null(strstr(r.out, "-mon chardev=qckpt-qmp,mode=control"));
	run_free(&r);
	free(want);
	free(drive);
	free(base);
	free(ov1);
	free(ov2);
	free(name);
}

static void assert_refused(struct run *r, int status, const char *name, const char *what)
{
	char *prefix = fmt("qckpt: %s: ", name);

	if (r->status != status || strstr(r->err, what) == NULL || strncmp(r->err, prefix, strlen(prefix)) != 0)
		fail_msg("expected status %d and one line '%s...%s', got %d: %s", status, prefix, what,
			 r->status, r->err);
	assert_int_equal(count_lines(r->err), 1);
	free(prefix);
}

static void test_run_refuses_a_missing_overlay_or_a_wrong_backing_file(void **state)
{
	char *name = fmt("miss%d", ++serial), *base, *ov1, *ov2, *drive, *other;
	struct run r;

	fake_catalog(name, &base, &ov1, &ov2);
	drive = fmt("file=%s,format=raw", base);
	/* an overlay whose header names another backing file */
	other = fmt("%s/%s-other.raw", harness_tmpdir(), name);
	assert_int_equal(disk_create(other, HVM_RAW, 1), 0);
	unlink(ov2);
	assert_int_equal(disk_create_overlay(ov2, other, "raw"), 0);
	r = qckpt("run", "--dir", catalog_dir, name, "--", harness_qemu(), "-drive", drive, NULL);
	assert_refused(&r, 1, name, "names backing file");
	run_free(&r);
	/* the active overlay gone */
	unlink(ov2);
	r = qckpt("run", "--dir", catalog_dir, name, "--", harness_qemu(), "-drive", drive, NULL);
	assert_refused(&r, 1, name, "is missing; nothing was started: put the file back");
	assert_non_null(strstr(r.err, ov2));
	run_free(&r);
	/* nothing registered, nothing recorded */
	r = qckpt("disks", name, NULL);
	assert_int_equal(r.status, 1); /* not registered, but vm.json exists: its chain is broken */
	run_free(&r);
	free(drive);
	free(other);
	free(base);
	free(ov1);
	free(ov2);
	free(name);
}

static void test_run_refuses_another_guest_name(void **state)
{
	char *name = fmt("named%d", ++serial);
	struct run r = qckpt("run", "--dir", catalog_dir, name, "--", harness_qemu(),
			     "-name", "guest=someone-else,debug-threads=on", NULL);

	assert_refused(&r, 2, name, "names the guest 'someone-else'");
	run_free(&r);
	free(name);
}

/* `qckpt restore` starts run while the old QEMU still quits and holds it
 * on a pipe (QCKPT_RESTORE_HOLD_FD); a restore that ends without saying
 * go leaves nothing started: run says so and exits 1. */
static void test_run_held_by_a_restore_that_gives_up_starts_nothing(void **state)
{
	char *name = fmt("held%d", ++serial), fdtext[16];
	int fds[2];
	struct run r;

	assert_int_equal(pipe(fds), 0); /* inherited by run: no O_CLOEXEC */
	close(fds[1]);                  /* the restore is gone */
	snprintf(fdtext, sizeof fdtext, "%d", fds[0]);
	setenv("QCKPT_RESTORE_HOLD_FD", fdtext, 1);
	r = qckpt("run", "--dir", catalog_dir, name, "--", harness_qemu(), "-nodefaults",
		  "-display", "none", NULL);
	unsetenv("QCKPT_RESTORE_HOLD_FD");
	close(fds[0]);
	assert_refused(&r, 1, name, "ended before the old QEMU had exited; QEMU was not started");
	run_free(&r);
	free(name);
}

/* A record of NAME's catalog whose disk drv0 froze FROZEN (checkpoint
 * "before-upgrade"), as a restore by hand leaves it: not in vm.json's chain. */
static void fake_record(const char *name, const char *frozen)
{
	char *dir = fmt("%s/%s/ck-frozen", catalog_dir, name), *path = fmt("%s/checkpoint.json", dir);
	json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:I, s:[{s:s, s:s, s:s}]}",
				"Id", "ck-frozen", "Name", "before-upgrade", "VMName", name,
				"CreationTime", "2026-11-25T07:55:45.594+00:00",
				"CreationEpochMs", (json_int_t)1764057345594, "Disks",
				"Device", "drv0", "CheckpointImage", frozen, "ActiveImage", "/gone.qcow2");

	assert_int_equal(mkdir_p(dir, 0700), 0);
	assert_int_equal(json_dump_file(rec, path, 0), 0);
	json_decref(rec);
	free(path);
	free(dir);
}

static struct run dry_run(const char *name, const char *opt, const char *value, const char *force)
{
	return force ? qckpt("run", "--dry-run", force, "--dir", catalog_dir, name, "--", harness_qemu(),
			     opt, value, NULL)
		     : qckpt("run", "--dry-run", "--dir", catalog_dir, name, "--", harness_qemu(),
			     opt, value, NULL);
}

static void test_run_refuses_disks_it_cannot_place_and_force_launches_anyway(void **state)
{
	char *name = fmt("place%d", ++serial), *img = fmt("%s/%s-bare.raw", harness_tmpdir(), name);
	char *json_drive = fmt("file=json:{\"driver\":\"file\",\"filename\":\"%s\"},if=virtio", img);
	const char *cases[][2] = {
		{ "-fda", img }, { "-fdb", img }, { "-pflash", img }, { "-mtdblock", img },
		{ "-sd", img }, { "-readconfig", img }, { "-set", "drive.d0.file=/x.img" },
		{ "-drive", json_drive },
	};
	struct run r;
	char *before = read_file(registry_path);

	assert_int_equal(disk_create(img, HVM_RAW, 1), 0);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		r = dry_run(name, cases[i][0], cases[i][1], NULL);
		assert_refused(&r, 2, name, "nothing was started (--force launches anyway");
		assert_non_null(strstr(r.err, cases[i][0]));
		assert_string_equal(r.out, "");
		run_free(&r);
		r = dry_run(name, cases[i][0], cases[i][1], "--force");
		if (r.status != 0 || strstr(r.err, "launching anyway (--force)") == NULL ||
		    strstr(r.out, cases[i][0]) == NULL)
			fail_msg("--force %s: status %d, out '%s', err '%s'", cases[i][0], r.status, r.out, r.err);
		run_free(&r);
	}
	/* Not a dry run: nothing registered, no vm.json written. */
	r = qckpt("run", "--dir", catalog_dir, name, "--", harness_qemu(), "-fda", img, NULL);
	assert_refused(&r, 2, name, "-fda");
	run_free(&r);
	{
		char *after = read_file(registry_path), *vmdir = fmt("%s/%s", catalog_dir, name);

		assert_string_equal(after, before);
		assert_int_equal(access(vmdir, F_OK), -1);
		free(after);
		free(vmdir);
	}
	free(before);
	free(json_drive);
	free(img);
	free(name);
}

static void test_run_refuses_a_frozen_image_opened_writable(void **state)
{
	char *name = fmt("frozen%d", ++serial), *base, *ov1, *ov2, *frozen, *drive, *want;
	struct run r;

	fake_catalog(name, &base, &ov1, &ov2);
	frozen = fmt("%s/%s-restored-onto.qcow2", harness_tmpdir(), name);
	assert_int_equal(disk_create_overlay(frozen, base, "raw"), 0);
	fake_record(name, frozen);

	/* written: refused, naming the disk, the image and the current one */
	drive = fmt("file=%s,format=qcow2,if=virtio", frozen);
	r = dry_run(name, "-drive", drive, NULL);
	assert_refused(&r, 1, name, "disk drv0: ");
	assert_non_null(strstr(r.err, "is frozen (checkpoint 'before-upgrade' depends on it)"));
	assert_non_null(strstr(r.err, ov2));
	run_free(&r);
	free(drive);
	/* "file:" is the same file to QEMU */
	drive = fmt("file=file:%s,format=qcow2", frozen);
	r = dry_run(name, "-drive", drive, NULL);
	assert_refused(&r, 1, name, "is frozen");
	run_free(&r);
	free(drive);
	r = dry_run(name, "-hda", frozen, NULL);
	assert_refused(&r, 1, name, "is frozen");
	run_free(&r);
	/* read-only uses are fine and left as they are */
	drive = fmt("file=%s,format=qcow2,readonly=on", frozen);
	r = dry_run(name, "-drive", drive, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, frozen));
	run_free(&r);
	free(drive);
	drive = fmt("file=%s,format=qcow2,snapshot=on", frozen);
	r = dry_run(name, "-drive", drive, NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	free(drive);
	r = dry_run(name, "-cdrom", frozen, NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	/* an image of the chain, spelled file:, moves to the current image */
	drive = fmt("file=file:%s,format=raw,if=virtio", base);
	r = dry_run(name, "-drive", drive, NULL);
	if (r.status != 0)
		fail_msg("file:%s refused (%d): %s", base, r.status, r.err);
	want = fmt("-drive file=%s,format=qcow2,if=virtio", ov2);
	if (strstr(r.out, want) == NULL)
		fail_msg("dry run printed '%s', lacking '%s'", r.out, want);
	run_free(&r);
	free(want);
	free(drive);
	/* two images of one chain would both become its current image */
	drive = fmt("file=%s,format=raw,if=virtio", base);
	want = fmt("file=%s,format=qcow2,if=virtio", ov1);
	r = qckpt("run", "--dry-run", "--dir", catalog_dir, name, "--", harness_qemu(),
		  "-drive", drive, "-drive", want, NULL);
	assert_refused(&r, 1, name, "name the disk once");
	run_free(&r);
	free(want);
	free(drive);
	free(frozen);
	free(base);
	free(ov1);
	free(ov2);
	free(name);
}

/* What QEMU does with snapshot=on (the reason run lets it open a frozen
 * image): the guest writes the disk, the image stays as it was. */
static void test_snapshot_on_a_frozen_image_boots_and_leaves_it_unchanged(void **state)
{
	char *name = fmt("snap%d", ++serial);
	char *frozen = fmt("%s/%s-frozen.raw", harness_tmpdir(), name);
	char *drive = fmt("file=%s,format=raw,if=none,id=frozen0,snapshot=on", frozen);
	const char *extra[] = { "-drive", drive, "-device", "virtio-blk-pci,drive=frozen0", NULL };
	struct hvm_opts o = { .ndisks = 0, .mem_mib = 128, .qemu = qemu_bin, .extra_args = extra };
	char *cmp;
	json_t *blocks = NULL, *b;
	size_t i;
	int seen = 0;
	struct hvm *vm;

	assert_int_equal(disk_create(frozen, HVM_RAW, 1), 0);
	fake_record(name, frozen);
	vm = boot_through_run(&o, name, NULL);
	assert_non_null(vm);
	/* The guest has written its counter before tick 2. */
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	assert_true(hvm_wait_tick(vm, WAIT_MS) > 0);
	assert_int_equal(hvm_qmp(vm, "query-block", NULL, &blocks), 0);
	json_array_foreach(blocks, i, b) {
		json_t *img = json_object_get(json_object_get(b, "inserted"), "image");
		const char *backing = jstr(json_object_get(img, "backing-image"), "filename");

		if (strcmp(jstr(b, "device") ? jstr(b, "device") : "", "frozen0") == 0) {
			/* QEMU writes to a temporary overlay on top of it */
			assert_non_null(backing);
			assert_string_equal(backing, frozen);
			seen = 1;
		}
	}
	assert_true(seen);
	json_decref(blocks);
	assert_int_equal(hvm_quit(vm), 0);
	hvm_free(vm);
	/* disk_create made it all zeros; the guest's counter is not */
	cmp = fmt("cmp -n 65536 %s /dev/zero", frozen);
	{
		struct run r = shell(cmp);

		if (r.status != 0)
			fail_msg("QEMU wrote the frozen image: %s", r.out);
		run_free(&r);
	}
	free(cmp);
	free(drive);
	free(frozen);
	free(name);
}

/* ---- without the shim ------------------------------------------------- */

/* A VM started by hand: the checkpoint output says where the disk writes
 * now, and `qckpt disks` lists the chain for the user's launch script. */
static void test_without_run_checkpoint_says_which_path_and_disks_lists_it(void **state)
{
	struct hvm_opts o = { .name = "plain", .ndisks = 1, .disk_format = HVM_RAW, .mem_mib = 128,
			      .qemu = qemu_bin };
	struct hvm *vm = hvm_start(&o);
	json_t *a, *b, *lines, *d, *chain;
	char *err_a, *err_b, *line;
	FILE *f;
	struct run r;

	assert_non_null(vm);
	f = fopen(registry_path, "a");
	fprintf(f, "%s unix:%s dir=%s\n", hvm_name(vm), hvm_qmp_path(vm), catalog_dir);
	fclose(f);
	assert_true(hvm_wait_tick(vm, BOOT_MS) > 0);
	a = checkpoint_ok(hvm_name(vm), "disk-only", "one", &err_a);
	b = checkpoint_ok(hvm_name(vm), "disk-only", "two", &err_b);
	line = fmt("disk drv0 now writes to %s; %s is frozen", jstr(record_disk(a), "ActiveImage"),
		   hvm_disk_path(vm, 0));
	if (strstr(err_a, line) == NULL || strstr(err_a, note) == NULL)
		fail_msg("checkpoint output '%s' lacks '%s'", err_a, line);
	free(line);
	assert_non_null(strstr(err_b, jstr(record_disk(b), "ActiveImage")));

	/* qckpt disks: the table */
	r = qckpt("disks", hvm_name(vm), NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Device"));
	assert_non_null(strstr(r.out, "OriginalImage"));
	{
		/* the row: device, original image, active image (aligned columns) */
		char dev[64], orig[1024], act[1024];
		const char *row = strstr(r.out, "\ndrv0 ");

		assert_non_null(row);
		assert_int_equal(sscanf(row + 1, "%63s %1023s %1023s", dev, orig, act), 3);
		assert_string_equal(orig, hvm_disk_path(vm, 0));
		assert_string_equal(act, jstr(record_disk(b), "ActiveImage"));
	}
	assert_non_null(strstr(r.out, jstr(record_disk(a), "ActiveImage")));
	assert_int_equal(count_lines(r.out), 1 + 1 + 3);
	run_free(&r);

	/* --json: one object per disk */
	r = qckpt("disks", "--json", hvm_name(vm), NULL);
	assert_int_equal(r.status, 0);
	lines = json_lines(r.out);
	assert_int_equal(json_array_size(lines), 1);
	d = json_array_get(lines, 0);
	assert_string_equal(jstr(d, "Device"), "drv0");
	assert_string_equal(jstr(d, "OriginalImage"), hvm_disk_path(vm, 0));
	assert_string_equal(jstr(d, "ActiveImage"), jstr(record_disk(b), "ActiveImage"));
	chain = json_object_get(d, "Chain");
	assert_int_equal(json_array_size(chain), 3);
	assert_string_equal(json_string_value(json_array_get(chain, 0)), hvm_disk_path(vm, 0));
	assert_string_equal(json_string_value(json_array_get(chain, 1)), jstr(record_disk(a), "ActiveImage"));
	assert_string_equal(json_string_value(json_array_get(chain, 2)), jstr(record_disk(b), "ActiveImage"));
	json_decref(lines);
	run_free(&r);

	/* a VM nobody knows */
	r = qckpt("disks", "nosuchvm", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "qckpt: nosuchvm: not in the registry"));
	run_free(&r);
	json_decref(a);
	json_decref(b);
	free(err_a);
	free(err_b);
	hvm_free(vm);
}

static int setup(void **state)
{
	return group_files_setup("test-run", &registry_path, &catalog_dir);
}

static int setup_qemu10(void **state)
{
	qemu_bin = harness_require_qemu10();
	if (qemu_bin == NULL)
		return -1;
	return setup(state);
}

static int teardown(void **state)
{
	group_files_teardown(&registry_path, &catalog_dir);
	return 0;
}

int main(void)
{
	int rc = harness_init(), failed;
	/* What runs a VM, on QEMU 10 too (the refusals start nothing). */
	const struct CMUnitTest tests_qemu10[] = {
		cmocka_unit_test(test_run_execs_qemu_in_place_and_registers),
		cmocka_unit_test(test_without_run_checkpoint_says_which_path_and_disks_lists_it),
		cmocka_unit_test(test_relaunch_after_two_checkpoints_drive_qcow2),
		cmocka_unit_test(test_relaunch_after_two_checkpoints_blockdev_raw_base),
		cmocka_unit_test(test_snapshot_on_a_frozen_image_boots_and_leaves_it_unchanged),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dry_run_shows_the_rewritten_command),
		cmocka_unit_test(test_run_refuses_a_missing_overlay_or_a_wrong_backing_file),
		cmocka_unit_test(test_run_refuses_another_guest_name),
		cmocka_unit_test(test_run_held_by_a_restore_that_gives_up_starts_nothing),
		cmocka_unit_test(test_run_refuses_disks_it_cannot_place_and_force_launches_anyway),
		cmocka_unit_test(test_run_refuses_a_frozen_image_opened_writable),
		cmocka_unit_test(test_snapshot_on_a_frozen_image_boots_and_leaves_it_unchanged),
		cmocka_unit_test(test_run_execs_qemu_in_place_and_registers),
		cmocka_unit_test(test_without_run_checkpoint_says_which_path_and_disks_lists_it),
		cmocka_unit_test(test_relaunch_after_two_checkpoints_drive_qcow2),
		cmocka_unit_test(test_relaunch_after_two_checkpoints_drive_raw_base),
		cmocka_unit_test(test_relaunch_after_two_checkpoints_blockdev_raw_base),
	};

	if (rc != 0)
		return rc;
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return HARNESS_SKIP;
	}
	if (getenv("QCKPT_TEST_FILTER") != NULL)
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	failed = cmocka_run_group_tests_name("qckpt run and qckpt disks", tests, setup, teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qckpt run and qckpt disks on QEMU 10",
						      tests_qemu10, setup_qemu10, teardown);
	return failed ? 1 : 0;
}
