/*
 * rvm.h: VMs launched through `qckpt run` whose serial console survives a
 * relaunch, for the tests of the commands that relaunch a VM's QEMU
 * (test-restore.c, test-ramfile.c, test-remove.c, test-export.c).  A restore quits the VM's QEMU and starts a new one,
 * detached, through `qckpt run`, with the command line recorded at launch.
 * So these VMs do not use the harness's hvm (its serial is QEMU's stdout
 * and its observer monitor accepts one connection): each VM's serial
 * console is a unix socket the test listens on, in QEMU's client mode, and
 * every QEMU that runs the VM (the first one and each restored one)
 * connects to it while it starts.  Lines are kept per connection ("life"),
 * so a test tells the restored guest's output from the old one's.  Nothing
 * sleeps: waits run the harness loop until a line, a connection or a
 * process exit arrives.
 */
#ifndef RVM_H
#define RVM_H

#include <stdbool.h>
#include <jansson.h>
#include <uv.h>

#define RVM_MAX 8

struct rvm;

struct rconn {
	uv_pipe_t pipe;
	struct rvm *vm;
	int life;
	char buf[4096];
	size_t len;
};

struct rvm {
	char *name;
	char *serial_path;
	uv_pipe_t server;
	char **lines;
	int *life_of;
	size_t nlines, cap, cursor;
	int lives;            /* QEMU connections so far */
	int open_lives;       /* connections open now */
	int max_open_lives;   /* the most open at once (the test may reset it) */
	char **disks;
	unsigned ndisks;
	char **argv;          /* qckpt run ... -- QEMU ... */
	uv_process_t proc;    /* the `qckpt run` we started, our child */
	int proc_running;
	int exit_status, exit_signal; /* of that `qckpt run` (QEMU) once it ended */
	int open;             /* handles not closed yet */
};

/* Set by the test: the catalog (`qckpt run --dir`), the QEMU to run (a
 * pointer to the test's current choice; NULL or *NULL: harness_qemu()),
 * more `qckpt run` options before NAME (NULL-terminated, or NULL), and
 * the VMs started so far (names are BASE + that number). */
extern char *rvm_catalog_dir;
extern const char *const *rvm_qemu_bin;
extern const char *const *rvm_run_args;
extern int rvm_serial_no;
/* More kernel command line for the VMs launched from now on (e.g.
 * "qckpt.tick_ms=100"), or NULL. */
extern const char *rvm_append;
/* More QEMU arguments for the VMs launched from now on (NULL-terminated),
 * or NULL. */
extern const char *const *rvm_qemu_args;

/* Start a VM through `qckpt run` without waiting for it to boot (raw
 * disks of 16 MiB), or and wait for its first tick (fails the test). */
struct rvm *rvm_launch(const char *base, unsigned ndisks, unsigned mem_mib);
void rvm_wait_boot(struct rvm *vm);
/* Start the VM's `qckpt run ... -- QEMU ...` (vm->argv) again. */
void spawn_run(struct rvm *vm);
struct rvm *rvm_start(const char *base, unsigned ndisks, unsigned mem_mib);
/* The next "tick N" of life LIFE after the cursor: N, or -1. */
long wait_tick(struct rvm *vm, int life, unsigned timeout_ms);
/* Whether life LIFE printed a line containing TEXT (so far). */
bool life_printed(struct rvm *vm, int life, const char *text);
/* The same, among the VM's lines from index FROM on (vm->nlines then). */
bool life_printed_since(struct rvm *vm, int life, size_t from, const char *text);
/* The VM's vm.json (new reference; fails the test if there is none). */
json_t *vm_json(struct rvm *vm);
/* The pid of the VM's QEMU now (vm.json's launch), or -1 if it is gone. */
long vm_pid(struct rvm *vm);
/* Kill every VM's QEMU (whichever launch runs now), close and free;
 * first the extras (below). */
void rvm_kill_all(void);

/* ---- exports (test-export.c, test-ramfile.c) ---- */

/* A VM the test made besides the rvms (`restore --from NAME`): its QEMU,
 * one more life of an rvm's serial listener, is killed by rvm_kill_all. */
void rvm_add_extra(const char *name);

/* A restored or exported guest (life LIFE of VM) carries on from COUNTER:
 * its first tick is COUNTER or the next one, and it never boots. */
void carries_on(struct rvm *vm, int life, long counter, const char *what);

/* `qckpt restore --from DIR NAME` succeeds, NAME becomes an extra VM
 * (rvm_add_extra) and its guest, one more life of VM's listener, carries
 * on from COUNTER.  Returns that life. */
int restore_from_ok(struct rvm *vm, const char *dir, const char *name, long counter,
		    const char *what);

/* The export in DIR started as its README says, with plain QEMU: the
 * README's lines after "    cd DIR" run by /bin/sh in DIR, the last one
 * exec'd; the guest resumed (the README's cont) when the load leaves it
 * paused, and it carries on from COUNTER.  The QEMU is killed by
 * rvm_kill_all. */
void start_with_plain_qemu(struct rvm *vm, json_t *rec, const char *dir, long counter);

/* The next --progress=json object of the text at *P (advancing it past
 * it), checked to be VM's with BytesDone never over BytesTotal; NULL at
 * the end.  Free it. */
json_t *progress_next(const char **p, const char *vm);

/* `qckpt export --progress=json`'s stderr (qckpt(1) PROGRESS): "checking",
 * "copying disks", "copying memory" if the disks finish first,
 * "recording", "done" last, in that order; figures only while the disks
 * and a RAM file are copied (qemu-img -p's percent of the disks' virtual
 * sizes, the RAM file's bytes), done never over total. */
void check_export_progress(const char *vm, const char *err);

/* A checkpoint record's disk I (borrowed); the counter its first disk's
 * frozen image holds (fails the test unless > 0). */
json_t *rec_disk(json_t *rec, size_t i);
long frozen_counter(json_t *rec);
/* The checkpoint mode whose saves restore safely on the QEMU in use:
 * live on QEMU 10, paused on 7.2, whose live pre-copy under TCG can lose
 * dirty pages (issue 7). */
const char *save_mode(void);

#endif
