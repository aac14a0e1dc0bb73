/*
 * test-ramfile.c: guest RAM in a reflinked file (`qckpt run --ram-file`),
 * against real QEMU 7.2 and 10.0 running the Linux test guest.
 *
 * Reflinks need XFS (or btrfs): the test makes its own XFS file system, a
 * sparse file formatted with mkfs.xfs -m reflink=1 and loop-mounted under
 * the harness's temp dir, holds the catalog (and so the RAM files) there,
 * and unmounts it at the end, also when a test fails (atexit).  That needs
 * root and loop devices: without them the test is skipped, except under
 * CI=true or QCKPT_REQUIRE_QEMU=1, where it fails.
 *
 * The VMs are rvm.h's (their serial console survives a restore's
 * relaunch): a checkpoint is checked by restoring it, and the restored
 * guest must carry on from the counter the checkpoint's frozen disk holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rvm.h"
#include "testutil.h"
#include "util.h"

#define WAIT_MS 30000u
/* Sparse: only what the tests write takes room.  Guests write most of
 * their RAM files (each restore's clone gets its own blocks as they do),
 * and a QEMU whose shared RAM file cannot get a block dies of SIGBUS. */
#define XFS_MIB 4096

static char *registry_path, *catalog_dir, *xfs_image, *xfs_mount;
static const char *qemu_bin; /* NULL: QEMU 7.2 (harness_qemu()) */
static int mounted;
static const char *const ram_file_args[] = { "--ram-file", NULL };

/* ---- the XFS file system -------------------------------------------------- */

static void xfs_unmount(void)
{
	if (!mounted)
		return;
	if (umount(xfs_mount) < 0 && umount2(xfs_mount, MNT_DETACH) < 0)
		fprintf(stderr, "test-ramfile: cannot unmount %s: %s\n", xfs_mount, strerror(errno));
	mounted = 0;
}

/* 0 when mounted; HARNESS_SKIP or 1 (required) after saying why not. */
static int xfs_make(void)
{
	int required = (getenv("CI") && strcmp(getenv("CI"), "true") == 0) ||
		       (getenv("QCKPT_REQUIRE_QEMU") && strcmp(getenv("QCKPT_REQUIRE_QEMU"), "1") == 0);
	const char *why = NULL;
	struct run r = { 0 };
	char *cmd;

	xfs_image = harness_path("xfs.img");
	xfs_mount = harness_path("xfs");
	if (geteuid() != 0) {
		why = "not root (mount)";
	} else if (access("/dev/loop-control", F_OK) < 0) {
		why = "no loop devices (/dev/loop-control)";
	} else {
		cmd = fmt("truncate -s %dM '%s' && mkfs.xfs -q -m reflink=1 '%s' && mkdir -p '%s' && mount -o loop '%s' '%s'",
			  XFS_MIB, xfs_image, xfs_image, xfs_mount, xfs_image, xfs_mount);
		r = shell(cmd);
		free(cmd);
		if (r.status == 0)
			mounted = 1;
		else
			why = "cannot make and mount an XFS file system (mkfs.xfs from xfsprogs, mount -o loop)";
	}
	if (why == NULL) {
		run_free(&r);
		atexit(xfs_unmount);
		return 0;
	}
	fprintf(stderr, "test-ramfile: %s%s%s: %s\n", why, r.err && *r.err ? ": " : "",
		r.err ? r.err : "", required ? "required under CI, failing" : "skipped");
	run_free(&r);
	return required ? 1 : HARNESS_SKIP;
}

/* ---- helpers -------------------------------------------------------------- */

static const char *running_ram(struct rvm *vm)
{
	static char path[4096];
	json_t *st = vm_json(vm);
	const char *p = jstr(json_object_get(st, "RamFile"), "Path");

	assert_non_null(p);
	snprintf(path, sizeof path, "%s", p);
	json_decref(st);
	return path;
}

/* FNV-1a of a whole file: has the frozen RAM file changed? */
static uint64_t file_hash(const char *path)
{
	uint64_t h = 1469598103934665603ull;
	unsigned char buf[1 << 16];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		for (ssize_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 1099511628211ull;
	close(fd);
	return h;
}

/* A running VM, its RAM in a file in its catalog directory (on the XFS). */
static struct rvm *ram_vm(const char *base)
{
	struct rvm *vm;

	rvm_run_args = ram_file_args;
	vm = rvm_start(base, 1, 128);
	rvm_run_args = NULL;
	return vm;
}

/* A ram-file checkpoint: the mode auto chose, the record, the frozen copy. */
static json_t *ram_checkpoint(struct rvm *vm, const char *name)
{
	json_t *rec = checkpoint_ok(vm->name, "auto", name, NULL), *mem;
	char *copy;
	struct stat st;

	assert_string_equal(jstr(rec, "Mode"), "ram-file");
	mem = json_object_get(rec, "MemoryState");
	assert_string_equal(jstr(mem, "Kind"), "ram-file");
	copy = fmt("%s/ram", jstr(rec, "Path"));
	assert_string_equal(jstr(mem, "RamFile"), copy);
	assert_int_equal(stat(copy, &st), 0);
	assert_int_equal(st.st_size, 128ll << 20);
	assert_int_equal(json_integer_value(json_object_get(mem, "RamBytes")), 128ll << 20);
	/* the device state alone: well under a MiB, not the guest's RAM */
	assert_true(json_integer_value(json_object_get(mem, "Bytes")) < (4ll << 20));
	free(copy);
	return rec;
}

/* Restore VM to REC: the new QEMU runs on a new reflink of the frozen RAM
 * file (never the file itself), and the guest carries on from the
 * checkpoint's counter.  The tick it printed. */
static long ram_restore_ok(struct rvm *vm, json_t *rec)
{
	int life = vm->lives + 1;
	long counter = frozen_counter(rec), tick;
	const char *frozen = jstr(json_object_get(rec, "MemoryState"), "RamFile");
	char *before = strdup(running_ram(vm));
	struct run r = qckpt("restore", "-v", vm->name, jstr(rec, "Id"), NULL);
	struct stat a, b;

	if (r.status != 0)
		fail_msg("qckpt restore %s: exit %d: %s", vm->name, r.status, r.err);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("%s restored to counter %ld printed tick %ld", vm->name, counter, tick);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
	/* a new running file; the one the old QEMU ran on is gone */
	assert_string_not_equal(running_ram(vm), before);
	assert_int_not_equal(access(before, F_OK), 0);
	assert_int_equal(stat(running_ram(vm), &a), 0);
	assert_int_equal(stat(frozen, &b), 0);
	assert_true(a.st_ino != b.st_ino);
	free(before);
	run_free(&r);
	return tick;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_ram_file_checkpoint_restores_to_the_instant(void **state)
{
	struct rvm *vm = ram_vm("inst");
	json_t *rec = ram_checkpoint(vm, "first");
	long t;

	/* the guest ran on after the checkpoint */
	while ((t = wait_tick(vm, 1, WAIT_MS)) > 0 && t <= frozen_counter(rec) + 1)
		;
	assert_true(t > frozen_counter(rec) + 1);
	assert_true(json_integer_value(json_object_get(rec, "PauseMs")) > 0);
	ram_restore_ok(vm, rec);
	json_decref(rec);
	rvm_kill_all();
}

/* Two QEMUs run, one after the other, on reflinks of one checkpoint: the
 * first one's writes (its guest ran on for ticks) reach neither the frozen
 * file nor the second, which starts from the checkpoint's instant again. */
static void test_the_same_checkpoint_restores_twice_and_each_copy_runs_on_its_own(void **state)
{
	struct rvm *vm = ram_vm("twice");
	json_t *rec = ram_checkpoint(vm, "again");
	const char *frozen = jstr(json_object_get(rec, "MemoryState"), "RamFile");
	uint64_t h0 = file_hash(frozen);
	long counter = frozen_counter(rec), t;

	ram_restore_ok(vm, rec);
	while ((t = wait_tick(vm, vm->lives, WAIT_MS)) > 0 && t < counter + 5)
		;
	assert_true(t >= counter + 5);
	assert_true(file_hash(frozen) == h0);
	ram_restore_ok(vm, rec);
	assert_true(file_hash(frozen) == h0);
	json_decref(rec);
	rvm_kill_all();
}

/* A checkpoint of a restored VM is again a ram-file checkpoint, and
 * restoring the first one after it still works (a tree of them). */
static void test_a_restored_vm_takes_ram_file_checkpoints_again(void **state)
{
	struct rvm *vm = ram_vm("tree");
	json_t *a = ram_checkpoint(vm, "a"), *b;

	ram_restore_ok(vm, a);
	assert_true(wait_tick(vm, vm->lives, WAIT_MS) > 0);
	b = ram_checkpoint(vm, "b");
	assert_string_equal(jstr(b, "ParentCheckpointId"), jstr(a, "Id"));
	ram_restore_ok(vm, b);
	ram_restore_ok(vm, a);
	json_decref(a);
	json_decref(b);
	rvm_kill_all();
}

/* restore --no-relaunch leaves the reflink and the pending restore in
 * vm.json; a plain `qckpt run` (systemd, a script) starts QEMU on it. */
static void test_a_pending_ram_file_restore_is_picked_up_by_qckpt_run(void **state)
{
	struct rvm *vm = ram_vm("norelaunch");
	json_t *rec = ram_checkpoint(vm, "later"), *st;
	struct run r = qckpt("restore", "--no-relaunch", vm->name, "later", NULL);
	long counter = frozen_counter(rec), tick;
	char *clone;
	int life;

	if (r.status != 0)
		fail_msg("%s", r.err);
	run_free(&r);
	assert_int_equal(vm_pid(vm), -1);
	st = vm_json(vm);
	assert_string_equal(jstr(json_object_get(st, "PendingRestore"), "Kind"), "ram-file");
	clone = strdup(jstr(json_object_get(st, "RamFile"), "Path"));
	assert_int_equal(access(clone, F_OK), 0);
	json_decref(st);
	life = vm->lives + 1;
	spawn_run(vm);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("restored to counter %ld, printed tick %ld", counter, tick);
	assert_false(life_printed(vm, life, "qckpt-guest: boot"));
	/* QEMU runs on that reflink */
	assert_string_equal(running_ram(vm), clone);
	st = vm_json(vm);
	assert_null(json_object_get(st, "PendingRestore"));
	json_decref(st);
	free(clone);
	json_decref(rec);
	rvm_kill_all();
}

static char *qmp_status(struct rvm *vm)
{
	struct run r = qckpt("qmp", vm->name, "query-status", NULL);
	json_t *st = json_loads(r.out, 0, NULL);
	char *status;

	assert_int_equal(r.status, 0);
	assert_non_null(st);
	status = strdup(jstr(st, "status"));
	json_decref(st);
	run_free(&r);
	return status;
}

/* A paused guest stays paused: no stop, no cont; a second checkpoint
 * before it runs shares the first one's files (hard links: QEMU cannot
 * save a guest twice without running it); each restores paused, at the
 * instant it was taken. */
static void test_a_paused_guest_gets_a_ram_file_checkpoint_and_stays_paused(void **state)
{
	struct rvm *vm = ram_vm("paused");
	struct run r = qckpt("qmp", vm->name, "stop", NULL);
	json_t *a, *b;
	char *status;
	struct stat sa, sb;
	long counter, tick;
	int life;

	assert_int_equal(r.status, 0);
	run_free(&r);
	a = ram_checkpoint(vm, "p");
	assert_string_equal(jstr(a, "GuestState"), "paused");
	status = qmp_status(vm);
	assert_string_not_equal(status, "running");
	free(status);
	b = checkpoint_ok(vm->name, "auto", "p2", NULL);
	assert_int_equal(stat(jstr(json_object_get(a, "MemoryState"), "RamFile"), &sa), 0);
	assert_int_equal(stat(jstr(json_object_get(b, "MemoryState"), "RamFile"), &sb), 0);
	assert_true(sa.st_ino == sb.st_ino);
	counter = frozen_counter(b);
	life = vm->lives + 1;
	r = qckpt("restore", vm->name, jstr(b, "Id"), NULL);
	if (r.status != 0)
		fail_msg("qckpt restore: exit %d: %s", r.status, r.err);
	run_free(&r);
	status = qmp_status(vm);
	assert_string_equal(status, "paused");
	free(status);
	r = qckpt("qmp", vm->name, "cont", NULL);
	assert_int_equal(r.status, 0);
	run_free(&r);
	tick = wait_tick(vm, life, WAIT_MS);
	if (tick != counter && tick != counter + 1)
		fail_msg("restored to counter %ld, printed tick %ld", counter, tick);
	json_decref(a);
	json_decref(b);
	rvm_kill_all();
}

/* Refusals: nothing is started, one line says why. */
static void run_refused(char *const *argv, const char *expect)
{
	struct run r = qckpt_argv(argv);
	size_t lines = 0;

	if (r.status != 2 || strstr(r.err, expect) == NULL)
		fail_msg("qckpt run: exit %d, wanted 2 and '%s': %s", r.status, expect, r.err);
	for (const char *p = r.err; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 1);
	run_free(&r);
}

static void test_run_refuses_a_ram_file_on_a_file_system_without_reflinks(void **state)
{
	char *tmpfs = harness_path("tmpfs");
	char *dir = fmt("--ram-file=%s", tmpfs);
	char *vmdir = fmt("%s/norefl", catalog_dir), *cmd;
	struct run r;

	mkdir(tmpfs, 0700);
	assert_int_equal(mount("qckpt-test", tmpfs, "tmpfs", 0, "size=16m"), 0);
	run_refused((char *[]){ "run", "--dir", catalog_dir, dir, "norefl",
				"--", (char *)harness_qemu(), "-m", "64", NULL },
		    "cannot make reflinks");
	/* nothing left behind: no RAM file, no registration */
	cmd = fmt("ls -A '%s' '%s' 2>/dev/null; grep -c norefl '%s' || true", tmpfs, vmdir,
		  registry_path);
	r = shell(cmd);
	free(cmd);
	assert_non_null(strstr(r.out, "0\n"));
	assert_null(strstr(r.out, ".ram"));
	run_free(&r);
	umount(tmpfs);
	/* the catalog (where checkpoints reflink it to) elsewhere */
	free(dir);
	dir = fmt("--ram-file=%s", xfs_mount);
	run_refused((char *[]){ "run", "--dir", (char *)harness_tmpdir(), dir, "crossfs", "--",
				(char *)harness_qemu(), "-m", "64", NULL },
		    "on another file system, and reflinks cannot cross them");
	free(vmdir);
	free(dir);
	free(tmpfs);
}

static void test_run_refuses_a_ram_file_beside_another_memory_backend(void **state)
{
	run_refused((char *[]){ "run", "--dir", catalog_dir, "--ram-file",
				"twoback", "--", (char *)harness_qemu(), "-m", "64", "-object",
				"memory-backend-ram,id=m0,size=64M", "-machine", "memory-backend=m0", NULL },
		    "a backend of its own (-machine memory-backend=m0)");
	run_refused((char *[]){ "run", "--dir", catalog_dir, "--ram-file",
				"mempath", "--", (char *)harness_qemu(), "-mem-path", "/dev/hugepages", NULL },
		    "a backend of its own (-mem-path");
}

/* --dry-run shows the backend QEMU gets: the -m size, shared, the id
 * QEMU's pc machines give their RAM (so plain migration streams fit). */
static void test_run_adds_a_shared_file_backend_of_the_ram_size(void **state)
{
	struct run r = qckpt("run", "--dry-run", "--dir", catalog_dir, "--ram-file", "dry", "--",
			     harness_qemu(), "-m", "size=1.5G", NULL);

	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "memory-backend-file,id=pc.ram,size=1610612736,share=on,mem-path="));
	assert_non_null(strstr(r.out, "-machine memory-backend=pc.ram"));
	run_free(&r);
}

/* ---- export and restore --from --------------------------------------------- */

/* A tmpfs (no reflinks) under the harness's temp dir, unmounted by the
 * test's teardown. */
static char *tmpfs_path;

static const char *tmpfs_mount(void)
{
	tmpfs_path = harness_path("tmpfs-export");
	mkdir(tmpfs_path, 0700);
	assert_int_equal(mount("qckpt-test", tmpfs_path, "tmpfs", 0, "size=512m"), 0);
	return tmpfs_path;
}

static void tmpfs_unmount(void)
{
	if (tmpfs_path != NULL && umount(tmpfs_path) < 0)
		umount2(tmpfs_path, MNT_DETACH);
	free(tmpfs_path);
	tmpfs_path = NULL;
}

/* `restore --from` refused: exit 1, one line saying EXPECT, NAME neither
 * registered nor in CATALOG. */
static void import_refused(char *const *argv, const char *name, const char *catalog,
			   const char *expect, const char *expect2)
{
	struct run r = qckpt_argv(argv);
	char *vmdir = fmt("%s/%s", catalog, name);

	if (r.status != 1 || strstr(r.err, expect) == NULL || strstr(r.err, expect2) == NULL ||
	    strchr(r.err, '\n') != r.err + strlen(r.err) - 1)
		fail_msg("restore --from: exit %d, wanted 1 and one line with '%s' and '%s': %s",
			 r.status, expect, expect2, r.err);
	run_free(&r);
	r = qckpt("vms", "--names", NULL);
	assert_null(strstr(r.out, name));
	run_free(&r);
	assert_int_not_equal(access(vmdir, F_OK), 0);
	free(vmdir);
}

/* The export's RAM file: the frozen one's bytes, as long. */
static void exported_ram(const char *dir, uint64_t hash)
{
	char *path = fmt("%s/memory.ram", dir);
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 128ll << 20);
	assert_true(file_hash(path) == hash);
	free(path);
}

/*
 * A ram-file checkpoint exported twice while the VM runs on: onto the same
 * XFS (a reflink) and onto a tmpfs (a full copy without the holes, its
 * progress counted).  `restore --from` refuses a catalog or a --ram-file
 * directory where reflinks cannot go, then makes a second VM from the
 * tmpfs export that carries on from the checkpoint, checkpoints in
 * ram-file mode and restores that; plain QEMU, as the README says, starts
 * the XFS export and carries on too; the export's RAM file stays as it was.
 */
static void test_a_ram_file_checkpoint_exports_and_starts_with_plain_qemu_and_as_a_new_vm(void **state)
{
	struct rvm *vm = ram_vm("exp");
	json_t *rec = ram_checkpoint(vm, "c"), *erec, *st, *rec2;
	const char *frozen = jstr(json_object_get(rec, "MemoryState"), "RamFile");
	uint64_t hash = file_hash(frozen);
	long counter = frozen_counter(rec), pid = vm_pid(vm), t;
	char *dir = fmt("%s/export-%s", xfs_mount, vm->name), *tdir, *copy = fmt("%s-copy", vm->name);
	char *path, *text, *tcatalog, *tram;
	struct run r;
	struct stat sb;
	int life;

	/* on the same XFS: a reflink */
	r = qckpt("export", "-v", vm->name, "c", dir, NULL);
	if (r.status != 0)
		fail_msg("qckpt export: exit %d: %s", r.status, r.err);
	assert_non_null(strstr(r.err, "reflinked"));
	run_free(&r);
	exported_ram(dir, hash);
	path = fmt("%s/checkpoint.json", dir);
	erec = json_load_file(path, 0, NULL);
	assert_non_null(erec);
	assert_string_equal(jstr(json_object_get(erec, "MemoryState"), "Kind"), "ram-file");
	assert_string_equal(jstr(json_object_get(erec, "MemoryState"), "RamFile"), "memory.ram");
	assert_string_equal(jstr(json_object_get(erec, "MemoryState"), "Path"), "memory.state");
	free(path);
	path = fmt("%s/%s", dir, jstr(rec_disk(erec, 0), "CheckpointImage"));
	assert_int_equal(disk_read_counter(path), counter);
	free(path);
	path = fmt("%s/README", dir);
	text = read_file(path);
	assert_non_null(strstr(text, "memory-backend-file,id=pc.ram,size=134217728,share=on,mem-path=running.ram"));
	assert_non_null(strstr(text, "-chardev pipe,id=qckpt-incoming,path=incoming"));
	assert_non_null(strstr(text, "-incoming defer"));
	assert_non_null(strstr(text, "cp --reflink=auto --sparse=always memory.ram running.ram"));
	free(text);
	free(path);
	path = fmt("%s/incoming.in", dir);
	text = read_file(path);
	assert_non_null(strstr(text, "migrate_set_capability x-ignore-shared on\n"));
	assert_non_null(strstr(text, "migrate_incoming \"exec:cat memory.state\"\n"));
	free(text);
	free(path);

	/* onto a tmpfs: a full copy, counted, leaving the holes out */
	tdir = fmt("%s/export", tmpfs_mount());
	r = qckpt("export", "-v", "--progress=json", vm->name, "c", tdir, NULL);
	if (r.status != 0)
		fail_msg("qckpt export to a tmpfs: exit %d: %s", r.status, r.err);
	assert_non_null(strstr(r.err, "copied (the data, not the holes)"));
	check_export_progress(vm->name, r.err);
	run_free(&r);
	exported_ram(tdir, hash);
	path = fmt("%s/memory.ram", tdir);
	assert_int_equal(stat(path, &sb), 0);
	assert_true((long long)sb.st_blocks * 512 < sb.st_size);
	free(path);
	/* the VM ran on through both, the same QEMU */
	assert_int_equal(vm_pid(vm), pid);
	while ((t = wait_tick(vm, 1, WAIT_MS)) > 0 && t <= counter)
		;
	assert_true(t > counter);

	/* restore --from where the RAM file could not be reflinked */
	tcatalog = fmt("%s/catalog", tmpfs_path);
	tram = fmt("--ram-file=%s/ram", tmpfs_path);
	mkdir(tcatalog, 0700);
	setenv("QCKPT_CATALOG_DIR", tcatalog, 1);
	import_refused((char *[]){ "restore", "--from", tdir, copy, NULL }, copy, tcatalog,
		       "cannot make reflinks", "give --ram-file=DIR");
	setenv("QCKPT_CATALOG_DIR", catalog_dir, 1);
	import_refused((char *[]){ "restore", "--from", tdir, tram, copy, NULL }, copy, catalog_dir,
		       "cannot make reflinks", "give --ram-file=DIR");

	/* restore --from the tmpfs export: a second VM, carrying on */
	life = restore_from_ok(vm, tdir, copy, counter, "restore --from of a ram-file export");
	path = fmt("%s/%s/vm.json", catalog_dir, copy);
	st = json_load_file(path, 0, NULL);
	assert_non_null(st);
	assert_int_equal(strncmp(jstr(json_object_get(st, "RamFile"), "Path"), catalog_dir, strlen(catalog_dir)), 0);
	assert_int_equal(access(jstr(json_object_get(st, "RamFile"), "Path"), F_OK), 0);
	json_decref(st);
	free(path);
	/* ... which checkpoints in ram-file mode and restores that */
	while ((t = wait_tick(vm, life, WAIT_MS)) > 0 && t < counter + 3)
		;
	rec2 = checkpoint_ok(copy, "auto", "c2", NULL);
	assert_string_equal(jstr(rec2, "Mode"), "ram-file");
	assert_string_equal(jstr(json_object_get(rec2, "MemoryState"), "Kind"), "ram-file");
	assert_true(frozen_counter(rec2) >= counter + 2);
	life = vm->lives + 1;
	r = qckpt("restore", copy, "c2", NULL);
	if (r.status != 0)
		fail_msg("qckpt restore %s c2: exit %d: %s", copy, r.status, r.err);
	run_free(&r);
	carries_on(vm, life, frozen_counter(rec2), "restore of the imported VM's checkpoint");

	/* plain QEMU from the README, on a copy of the XFS export's RAM file */
	start_with_plain_qemu(vm, rec, dir, counter);
	exported_ram(dir, hash);
	assert_int_equal(vm_pid(vm), pid);
	assert_true(file_hash(frozen) == hash);

	json_decref(rec2);
	json_decref(erec);
	json_decref(rec);
	rvm_kill_all();
	/* the RAM files' blocks back for the tests after this one */
	path = fmt("rm -rf '%s' '%s/%s'", dir, catalog_dir, copy);
	r = shell(path);
	assert_int_equal(r.status, 0);
	run_free(&r);
	free(path);
	free(tram);
	free(tcatalog);
	free(tdir);
	free(dir);
	free(copy);
}

static bool run_exited(void *arg)
{
	return !((struct rvm *)arg)->proc_running;
}

/* A ram-file VM whose QEMU was started again by hand, with the command
 * `qckpt run` executed (vm.json's Executed: the backend on its RAM file):
 * qckpt cannot relaunch it, and the commands it prints for its ram-file
 * checkpoint put that backend on a reflink of the frozen RAM file and load
 * the device state with x-ignore-shared. */
static void test_a_ram_file_vm_started_by_hand_gets_a_recipe_with_its_backend(void **state)
{
	struct rvm *vm = ram_vm("byhand");
	json_t *rec = ram_checkpoint(vm, "c"), *st = vm_json(vm), *ex;
	static struct child c; /* the loop's until its handles are closed */
	char **argv, *line, *p, *clone, *backend;
	struct run r;
	size_t i;

	/* the same QEMU command, started by hand */
	kill((pid_t)vm_pid(vm), SIGKILL);
	assert_int_equal(harness_run_until(run_exited, vm, WAIT_MS), 0);
	ex = json_object_get(json_object_get(st, "CommandLine"), "Executed");
	argv = calloc(json_array_size(ex) + 1, sizeof *argv);
	for (i = 0; i < json_array_size(ex); i++)
		argv[i] = (char *)json_string_value(json_array_get(ex, i));
	child_start(&c, argv);
	assert_true(wait_tick(vm, 2, WAIT_MS * 10) > 0);

	r = qckpt("restore", vm->name, "c", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "not as launched by 'qckpt run'"));
	line = fmt("cp --reflink=always %s ", jstr(json_object_get(rec, "MemoryState"), "RamFile"));
	p = strstr(r.out, line);
	if (p == NULL)
		fail_msg("no '%s' in the recipe:\n%s", line, r.out);
	clone = strndup(p + strlen(line), strcspn(p + strlen(line), "\n"));
	backend = fmt("memory-backend-file,id=pc.ram,size=134217728,share=on,mem-path=%s", clone);
	if (strstr(r.out, backend) == NULL || strstr(r.out, "-incoming defer") == NULL ||
	    strstr(r.out, "migrate-set-capabilities x-ignore-shared on") == NULL ||
	    strstr(r.out, jstr(json_object_get(rec, "MemoryState"), "Path")) == NULL ||
	    strstr(r.out, jstr(json_object_get(st, "RamFile"), "Path")) != NULL)
		fail_msg("the recipe does not run QEMU on %s with x-ignore-shared and the device state:\n%s",
			 clone, r.out);
	/* nothing made, the VM runs on */
	assert_int_not_equal(access(clone, F_OK), 0);
	assert_true(wait_tick(vm, 2, WAIT_MS) > 0);
	run_free(&r);
	kill(c.proc.pid, SIGKILL);
	harness_run_until(child_done, &c, WAIT_MS);
	free(backend);
	free(clone);
	free(line);
	free(argv);
	json_decref(st);
	json_decref(rec);
	rvm_kill_all();
}

/* ---- groups ---------------------------------------------------------------- */

static int setup(void **state)
{
	if (group_files_setup("test-ramfile", &registry_path, &catalog_dir) < 0)
		return -1;
	free(catalog_dir);
	catalog_dir = fmt("%s/catalog", xfs_mount);
	mkdir(catalog_dir, 0700);
	rvm_catalog_dir = catalog_dir;
	rvm_qemu_bin = &qemu_bin;
	/* restore --from registers in the default catalog: the same */
	setenv("QCKPT_CATALOG_DIR", catalog_dir, 1);
	return 0;
}

static int setup_qemu10(void **state)
{
	qemu_bin = harness_require_qemu10();
	if (qemu_bin == NULL)
		return -1;
	return setup(state);
}

static int teardown_test(void **state)
{
	rvm_kill_all();
	tmpfs_unmount();
	return 0;
}

static int teardown(void **state)
{
	group_files_teardown(&registry_path, &catalog_dir);
	qemu_bin = NULL;
	return 0;
}

#define T(f) cmocka_unit_test_teardown(f, teardown_test)

int main(void)
{
	int rc = harness_init(), failed = 0;
	const struct CMUnitTest tests[] = {
		T(test_run_refuses_a_ram_file_on_a_file_system_without_reflinks),
		T(test_run_refuses_a_ram_file_beside_another_memory_backend),
		T(test_run_adds_a_shared_file_backend_of_the_ram_size),
		T(test_ram_file_checkpoint_restores_to_the_instant),
		T(test_the_same_checkpoint_restores_twice_and_each_copy_runs_on_its_own),
		T(test_a_restored_vm_takes_ram_file_checkpoints_again),
		T(test_a_paused_guest_gets_a_ram_file_checkpoint_and_stays_paused),
		T(test_a_pending_ram_file_restore_is_picked_up_by_qckpt_run),
		T(test_a_ram_file_checkpoint_exports_and_starts_with_plain_qemu_and_as_a_new_vm),
		T(test_a_ram_file_vm_started_by_hand_gets_a_recipe_with_its_backend),
	};
	const struct CMUnitTest tests_qemu10[] = {
		T(test_ram_file_checkpoint_restores_to_the_instant),
		T(test_the_same_checkpoint_restores_twice_and_each_copy_runs_on_its_own),
		T(test_a_restored_vm_takes_ram_file_checkpoints_again),
		T(test_a_paused_guest_gets_a_ram_file_checkpoint_and_stays_paused),
		T(test_a_ram_file_checkpoint_exports_and_starts_with_plain_qemu_and_as_a_new_vm),
	};

	if (rc != 0)
		return rc;
	if (harness_qckpt() == NULL) {
		fprintf(stderr, "QCKPT_BIN not set: run through make check\n");
		return HARNESS_SKIP;
	}
	if ((rc = xfs_make()) != 0)
		return rc;
	if (getenv("QCKPT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("QCKPT_TEST_FILTER"));
	failed += cmocka_run_group_tests_name("qckpt run --ram-file", tests, setup, teardown);
	if (harness_want_qemu10())
		failed += cmocka_run_group_tests_name("qckpt run --ram-file on QEMU 10",
						      tests_qemu10, setup_qemu10, teardown);
	xfs_unmount();
	return failed ? 1 : 0;
}
