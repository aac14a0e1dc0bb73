/*
 * harness.h: one helper layer for tests against real QEMU processes.
 *
 * Everything runs on one libuv loop owned by the harness: QEMU's serial
 * console, its stderr, an observer QMP monitor and child programs (qckpt) are
 * all read while any harness function waits.  Functions that wait run that
 * loop until their condition holds or a timeout expires; nothing sleeps.
 *
 * Each VM gets two QMP monitors: the primary one, a unix socket served by
 * QEMU at hvm_qmp_path() for the program under test, and an observer that
 * the harness itself holds (QEMU connects to a socket the harness listens
 * on, so it is there before the guest runs).  The observer records every
 * event with QEMU's timestamp, so a test can measure how long the guest was
 * paused independently of what the tool reports.  It speaks QMP with its
 * own small line reader on purpose: it must not depend on the qmp/ library
 * under test.
 *
 * The test guest (scripts/make-test-guest) prints "qckpt-guest: tick N" and
 * writes the counter record for N to sector 0 of every writable virtio disk
 * before each tick.
 *
 * Every QEMU started is killed at exit (and, through setpriv --pdeathsig,
 * when the test process dies); the private temp dir is removed at exit
 * unless QCKPT_KEEP_TMP=1.  QCKPT_VERBOSE=1 echoes serial lines to stderr.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>

/* automake's exit status for a skipped test */
#define HARNESS_SKIP 77

/*
 * Find QEMU (env QEMU_SYSTEM, else PATH), qemu-img/qemu-io (env QEMU_IMG,
 * else PATH) and the guest (env QCKPT_GUEST_DIR: vmlinuz, initrd.img), and
 * make a private temp dir under $TMPDIR.  Returns 0; HARNESS_SKIP when a
 * piece is missing; 1 instead when CI=true or QCKPT_REQUIRE_QEMU=1 (a
 * missing piece is then a failure).  Prints why.  main() returns the value.
 * Sets HOME, XDG_CONFIG_HOME, XDG_DATA_HOME, XDG_RUNTIME_DIR,
 * QCKPT_CATALOG_DIR, QCKPT_RUNTIME_DIR and QCKPT_JOBS_DIR to directories in
 * the temp dir (and unsets QCKPT_REGISTRY) for every program run after it:
 * no test writes outside the temp dir, as root neither.  Returns
 * HARNESS_SKIP when the program's name is in QCKPT_SKIP_TESTS (words
 * separated by spaces or commas: a make check without some programs).
 */
int harness_init(void);

/* The harness's loop, for tests that drive their own libuv handles. */
uv_loop_t *harness_loop(void);

/* The private temp dir (absolute), and "<that dir>/<name>" (malloc'd). */
const char *harness_tmpdir(void);
char *harness_path(const char *name);

/* Path of the QEMU 10 wrapper (env QCKPT_QEMU10, else
 * $QCKPT_TOP_BUILDDIR/qemu10/qemu-system-x86_64) if it is executable, else
 * NULL. */
const char *harness_qemu10(void);
/* Whether a test program runs its QEMU 10 group: QEMU 10 is there, or it
 * must be (CI=true, QCKPT_REQUIRE_QEMU=1 or
 * QCKPT_REQUIRE_QEMU10=1); if not, says the group is skipped. */
bool harness_want_qemu10(void);
/* For a QEMU 10 group's setup: the wrapper, or NULL after saying that it is
 * missing (the group then fails, as it must under CI). */
const char *harness_require_qemu10(void);
/*
 * Whether this build of a test program runs its group NAME ("default",
 * "qemu10", or a theme of the program's own).  Every group, unless the
 * program was compiled with -DHARNESS_GROUPS='"a,b"': Makefile.am builds
 * its longest programs more than once from one source, each build running
 * some of the groups, so that make -j2 keeps both cores busy to the end
 * of the suite (README, "Tests").
 */
#ifndef HARNESS_GROUPS
#define HARNESS_GROUPS NULL
#endif
bool harness_group_in(const char *groups, const char *name);
#define harness_group(name) harness_group_in(HARNESS_GROUPS, (name))

/*
 * The guest's kernel command line for every VM of the suite, before a
 * test's own options.  no_timer_check: on a loaded host a starved TCG
 * vCPU fails the kernel's IO-APIC timer check, which panics at boot
 * ("IO-APIC + timer doesn't work!"; seen many times at load 20+).
 * (mitigations=off saves nothing: 4 CPU seconds to the first tick with
 * and without, QEMU 7.2, 2026-12-02.)
 */
#define HARNESS_GUEST_CMDLINE "console=ttyS0 quiet panic=-1 no_timer_check"

/*
 * What the suite's time goes to, printed at exit as "# harness: N QEMU
 * started, B guest boots": every QEMU process that ran a test guest
 * (rvm.c's relaunched ones too) and how many of them booted it (the
 * others loaded a saved state).  rvm.c, which reads its own serial
 * consoles, tells the harness with these two.
 */
void harness_count_qemu(void);
void harness_count_serial_line(const char *line);

/* Default QEMU and qemu-img as found by harness_init(). */
const char *harness_qemu(void);
const char *harness_qemu_img(void);
/* The qckpt program under test (env QCKPT_BIN, set by make check), or NULL. */
const char *harness_qckpt(void);

/*
 * Run the loop until cond(arg) is true (checked before each iteration) or
 * timeout_ms passes.  Returns 0 or -1 on timeout.  For waiting on the
 * callbacks of a test's own handles (e.g. a qmp_client) while QEMU's output
 * keeps being collected.
 */
int harness_run_until(bool (*cond)(void *arg), void *arg, unsigned timeout_ms);

/*
 * Run a program (argv[0] is a path or a name in PATH) as a child on the
 * loop, capturing stdout and stderr (malloc'd, NUL-terminated; out/err may
 * be NULL to discard).  *exit_status: the exit code, or 128 + signal.  The
 * child is killed after 120 s.  Returns 0 if the program ran (whatever its
 * status), -1 if it could not be started.
 */
int harness_run(char *const argv[], char **out, char **err, int *exit_status);

/* ---- VMs ---- */

enum hvm_disk_format { HVM_QCOW2 = 0, HVM_RAW };

struct hvm_opts {
	const char *name;     /* for file names and log prefixes; default "vm" */
	const char *qemu;     /* binary (e.g. harness_qemu10()); default harness_qemu() */
	unsigned mem_mib;     /* default 256 */
	unsigned ndisks;      /* writable virtio disks vda.. created in the temp dir */
	enum hvm_disk_format disk_format; /* of the created disks */
	unsigned disk_mib;    /* size of created disks, default 16 */
	/* Use these existing images (absolute paths, NULL-terminated) instead
	 * of creating ndisks new ones; formats from disk_format. */
	const char *const *disk_paths;
	bool readonly_disk;   /* one more virtio disk, raw, read-only (after the others) */
	bool cdrom;           /* an empty IDE CD-ROM drive (id "cd0") */
	bool blockdev;        /* -blockdev + -device instead of legacy -drive */
	const char *incoming; /* -incoming VALUE, e.g. "defer" or "exec:cat FILE" */
	bool paused;          /* -S */
	const char *append;   /* extra kernel command line, e.g. "qckpt.tick_ms=100" */
	/* Another guest's kernel and initramfs (e.g. scripts/make-distro-guest's,
	 * for the benchmarks); NULL: the test guest's. */
	const char *kernel;
	const char *initrd;
	/* The guest agent's port: -device virtio-serial, a chardev socket
	 * server at hvm_agent_path() and a virtserialport named
	 * org.qemu.guest_agent.0.  agent also starts qemu-ga in the guest
	 * (qckpt.agent=1); agent_port alone gives a port nobody answers on. */
	bool agent;
	bool agent_port;
	/* One more writable virtio disk, raw, holding an ext4 file system made
	 * with mkfs.ext4 (serial "qckpt-fs": the guest mounts it and writes
	 * files, never the counter record); after the read-only disk. */
	bool fs_disk;
	const char *const *extra_args; /* NULL-terminated, appended last */
	/* Start QEMU through this command (NULL-terminated, e.g. "qckpt",
	 * "run", NAME, "--"), which must exec QEMU in place: the process is
	 * still the VM.  hvm_argv() stays QEMU's own arguments. */
	const char *const *argv_prefix;
	/* The VM's name is name exactly, without the sequence number: to
	 * start the same VM again after it quit. */
	bool exact_name;
	/* QEMU's -name when it must differ from the VM's (file names, logs):
	 * VMs of one name on several test "hosts" (test-remote). */
	const char *qemu_name;
};

/*
 * Disk naming: disk i is the QEMU block device "drvI" (legacy: the -drive id;
 * -blockdev: the format node name, its file node is "fileI") attached to
 * virtio-blk device "vdiskI"; the read-only disk is "drvro"/"vdiskro".
 */

/* One event seen by the observer monitor. */
struct hvm_event {
	char *name;
	json_t *data;     /* owned by the harness; empty object if absent */
	int64_t ts_us;    /* QEMU's timestamp, microseconds since the epoch */
	uint64_t recv_ms; /* uv_now() when the harness read it */
};

struct hvm;

/*
 * Start QEMU (-accel tcg, -nodefaults, serial to the harness, primary and
 * observer QMP monitors) and wait until the observer is negotiated (10 s).
 * Does not wait for the guest to boot: use hvm_wait_tick().  Returns NULL
 * (printing why) on failure.
 */
struct hvm *hvm_start(const struct hvm_opts *o);

pid_t hvm_pid(const struct hvm *vm);
const char *hvm_name(const struct hvm *vm);
const char *hvm_qmp_path(const struct hvm *vm);   /* primary monitor socket */
const char *hvm_disk_path(const struct hvm *vm, unsigned i); /* absolute */
unsigned hvm_ndisks(const struct hvm *vm);
/* The agent's socket (NULL without agent/agent_port) and the file system
 * disk's image (QEMU device "drvfs", virtio "vdiskfs"; NULL without fs_disk). */
const char *hvm_agent_path(const struct hvm *vm);
const char *hvm_fs_disk_path(const struct hvm *vm);
/* The arguments QEMU was started with (NULL-terminated), e.g. to restart. */
char *const *hvm_argv(const struct hvm *vm);

/*
 * Serial console.  Lines are kept ("\r\n" stripped).  A wait consumes lines:
 * it looks at lines after the last one consumed by a previous wait, and
 * consumes up to and including the one it returns; a wait that fails
 * consumes nothing.
 *
 * hvm_wait_serial: next line containing substr; returns its index in the
 * line list, or -1 (timeout, or QEMU exited).
 * hvm_wait_tick: the next "qckpt-guest: tick N" line; returns N or -1.
 * hvm_last_tick: the highest N seen so far in any line (no waiting beyond
 * reading what is already there), -1 if none.
 */
long hvm_wait_serial(struct hvm *vm, const char *substr, unsigned timeout_ms);
long hvm_wait_tick(struct hvm *vm, unsigned timeout_ms);
long hvm_last_tick(struct hvm *vm);
/* Skip everything received so far: later waits see only new lines/events. */
void hvm_consume_serial(struct hvm *vm);
size_t hvm_serial_count(const struct hvm *vm);
const char *hvm_serial_line(const struct hvm *vm, size_t i);

/*
 * Synchronous command on the observer monitor (runs the loop, 30 s).  args
 * (object or NULL) is stolen.  Returns 0 with *result the "return" value;
 * -1 when QEMU answered an error, *result then the error object
 * {"class","desc"} (the description is also printed); -2 when no reply came
 * (QEMU gone, timeout), *result NULL.  result may be NULL; otherwise the
 * caller json_decref()s it.
 */
int hvm_qmp(struct hvm *vm, const char *cmd, json_t *args, json_t **result);
/* The current run state ("running", "paused", "postmigrate", "inmigrate"...)
 * from query-status, malloc'd; NULL if the command failed. */
char *hvm_status(struct hvm *vm);

/*
 * Events, in arrival order.  hvm_wait_event returns the next event named
 * name after the last one consumed by a previous wait (consuming it and
 * the ones before it), or NULL on timeout / QEMU exit (consuming nothing).  hvm_event_count/hvm_event give the whole
 * list (event i stays valid until hvm_free).
 */
const struct hvm_event *hvm_wait_event(struct hvm *vm, const char *name,
				       unsigned timeout_ms);
size_t hvm_event_count(const struct hvm *vm);
const struct hvm_event *hvm_event(const struct hvm *vm, size_t i);
/* Skip all events received so far. */
void hvm_consume_events(struct hvm *vm);
/*
 * The guest pause: ms between the first STOP at index >= from and the next
 * RESUME, by QEMU's timestamps.  -1 if there is no such pair (yet).
 */
double hvm_pause_ms(const struct hvm *vm, size_t from);

/*
 * Ending a VM.  hvm_quit: QMP quit and wait for the exit (10 s, then
 * SIGKILL); returns the exit status (128 + signal if killed), -1 if it had
 * to be killed.  hvm_kill sends a signal.  hvm_wait_exit waits for the
 * process; returns its status or -1 on timeout.  hvm_exited: status if it
 * has exited, else -1.  hvm_free kills a running QEMU (SIGKILL), waits for
 * it and releases everything (NULL is fine); the disk images stay.
 */
int hvm_quit(struct hvm *vm);
int hvm_kill(struct hvm *vm, int signum);
int hvm_wait_exit(struct hvm *vm, unsigned timeout_ms);
int hvm_exited(const struct hvm *vm);
void hvm_free(struct hvm *vm);

/* ---- disk images ---- */

/* Create an image (absolute path) with qemu-img; 0 or -1. */
int disk_create(const char *path, enum hvm_disk_format fmt, unsigned mib);
/* Create a raw image holding an empty ext4 file system (mkfs.ext4); 0 or -1. */
int disk_create_ext4(const char *path, unsigned mib);
/* e2fsck -fn on a raw image (read-only check): e2fsck's exit status, 0
 * when the file system is clean; -1 if it could not run.  out gets its
 * output (malloc'd) when not NULL. */
int disk_fsck(const char *path, char **out);
/* Create a qcow2 overlay on backing (both absolute); 0 or -1. */
int disk_create_overlay(const char *path, const char *backing,
			const char *backing_fmt);
/*
 * The counter record at offset 0 of an image of any format (read with
 * qemu-io -r -U, through backing chains): N, or -1 if the sector holds no
 * record or the image cannot be read.
 */
long disk_read_counter(const char *image_path);

#endif
