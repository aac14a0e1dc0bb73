/*
 * restore-load.c: loading a checkpoint's memory into a QEMU started with
 * -incoming defer, over the monitor that QEMU opens to us (see restore.h).
 * QEMU-NOTES "Loading a memory state fast": the capabilities must match
 * the source (mapped-ram refuses otherwise), mapped-ram reads with multifd
 * channels from a seekable file: transport (an fdset, QEMU >= 9), older
 * QEMUs take the fd by name; with direct-io the fdset must also hold an
 * O_DIRECT fd (QEMU 10.0.2 crashes without one).  The state machine is
 * load_step(), read top to bottom.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "log.h"
#include "migrate.h"
#include "restore.h"
#include "util.h"

/* QEMU under TCG on a loaded host can take a while to start. */
#define LOAD_ACCEPT_TIMEOUT_MS 120000u
#define LOAD_FDNAME "qckpt-restore"
/* A load that neither completes nor fails: QEMU 10.0.2 with direct-io
 * hangs in "active" when a multifd channel hits an error (seen with a
 * stream for more RAM than the VM has: "page outside of ramblock").  The
 * deadline allows 16 MiB/s, and never less than a minute;
 * $QCKPT_RESTORE_LOAD_TIMEOUT (seconds) sets the minimum instead. */
#define LOAD_MIN_RATE (16ll << 20)
#define LOAD_MIN_TIMEOUT_MS 60000ll

/* Multifd channels for a mapped-ram load: 16 per online CPU, 16 to 64.
 * Not the CPU count: a load mostly waits, each page it writes is a fresh
 * page of guest RAM that the host may have to find first (a VM host that
 * took free memory back: a fault there blocks the thread, not the CPU),
 * so more channels keep more faults in flight.  On a 2-core VM, 5 rounds
 * each (median load): 1 GiB busy guest, 2 channels 143 ms, 8 116, 16 100,
 * 32 100; 4 GiB busy 192, 148, 135, 124; 1 GiB idle 57, 53, 48, 40. */
#define LOAD_CHANNELS_PER_CPU 16
#define LOAD_CHANNELS_MIN 16
#define LOAD_CHANNELS_MAX 64

static void load_enter(struct restore_load *load, enum load_state state);

long restore_load_channels(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long n = cpus > 0 ? cpus * LOAD_CHANNELS_PER_CPU : LOAD_CHANNELS_MIN;

	return n < LOAD_CHANNELS_MIN ? LOAD_CHANNELS_MIN : n > LOAD_CHANNELS_MAX ? LOAD_CHANNELS_MAX : n;
}

static const char *const load_state_names[] = {
	[LOAD_ACCEPT] = "accept", [LOAD_PROBE] = "probe", [LOAD_SETUP] = "setup",
	[LOAD_FD_DIRECT] = "fd-direct", [LOAD_READY] = "ready", [LOAD_INCOMING] = "incoming",
	[LOAD_RESUME] = "resume",
	[LOAD_SETTLE] = "settle", [LOAD_RECORD] = "record", [LOAD_DONE] = "done",
};
_Static_assert(sizeof load_state_names / sizeof *load_state_names == LOAD_DONE + 1,
	       "a load state without a name");

#define trace(load, ...) debug_vm((load)->vm, (load)->start_ns, __VA_ARGS__)

static void on_load_timeout(uv_timer_t *timer)
{
	struct restore_load *load = timer->data;

	if (load->state != LOAD_ACCEPT || load->task.finished)
		return;
	task_set_error(&load->task, -ETIMEDOUT,
		       "QEMU did not connect to the restore monitor %s within %u s",
		       load->sock_path, LOAD_ACCEPT_TIMEOUT_MS / 1000);
	load->task.awaiting = 0;
	task_wait(&load->task);
}

static void on_load_ready(struct vmconn *conn, int status)
{
	struct restore_load *load = conn->data;

	if (load->task.finished)
		return;
	if (status < 0) {
		task_set_error(&load->task, status, "%s", conn->error);
	} else {
		task_attach(&load->task, conn);
		verbose_vm(load->vm, "QEMU %s connected to the restore monitor (+%llu ms)",
			   conn->qmp.version_string, (unsigned long long)(mono_ms() - load->start_ms));
	}
	task_arrived(&load->task);
}

static void on_load_connection(uv_stream_t *server, int status)
{
	struct restore_load *load = server->data;
	int rc;

	if (status < 0 || load->conn_used)
		return;
	load->conn_used = 1;
	load->conn.data = load;
	trace(load, "QEMU connected to the restore monitor");
	rc = vmconn_accept(server->loop, &load->conn, load->vm, server,
			   load->sock_path, 30000, on_load_ready);
	/* One connection only: nobody else may speak for this QEMU. */
	uv_close((uv_handle_t *)&load->server, NULL);
	load->server_open = 0;
	unlink(load->sock_path);
	if (rc < 0) {
		task_set_error(&load->task, rc, "%s", load->conn.error);
		task_arrived(&load->task);
		return;
	}
	load->connected = 1;
	if (load->on_connected != NULL)
		load->on_connected(load);
}

static int load_init_handles(struct restore_load *load, uv_loop_t *loop,
			     const char *sock_path)
{
	load->sock_path = xstrdup(sock_path);
	load->memfd = load->memfd_direct = -1;
	load->fdset_id = -1;
	uv_timer_init(loop, &load->timer);
	load->timer.data = load;
	load->timer_open = 1;
	uv_pipe_init(loop, &load->server, 0);
	load->server.data = load;
	load->server_open = 1;
	return 0;
}

int restore_load_listen(struct restore_load *load, uv_loop_t *loop,
			const char *sock_path)
{
	int rc;

	load_init_handles(load, loop, sock_path);
	unlink(sock_path);
	rc = uv_pipe_bind(&load->server, sock_path);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&load->server, 1, on_load_connection);
	return rc;
}

int restore_load_adopt(struct restore_load *load, uv_loop_t *loop, int fd,
		       const char *sock_path)
{
	int rc;

	load_init_handles(load, loop, sock_path);
	rc = uv_pipe_open(&load->server, fd);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&load->server, 1, on_load_connection);
	return rc;
}

/* ---- the steps ---------------------------------------------------------- */

static json_t *recorded_caps(const struct restore_load *load)
{
	return json_object_get(load->pending, "Capabilities");
}

static int recorded_cap(const struct restore_load *load, const char *cap)
{
	size_t i;
	json_t *c;

	json_array_foreach(recorded_caps(load), i, c)
		if (json_is_string(c) && strcmp(json_string_value(c), cap) == 0)
			return 1;
	return 0;
}

/*
 * Whether at least half of the file's allocated blocks are in the page
 * cache (mincore on a read-only mapping; mapped-ram files are sparse, so
 * the holes do not count).  A memory state just saved is: reading it with
 * O_DIRECT would go to the disk for what RAM holds (bench-restore: a warm
 * 1 GiB load took 230 ms through the cache against 410 ms direct).
 */
static int mostly_cached(int fd, const struct stat *st)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages, resident = 0;
	unsigned char *vec;
	void *map;
	int rc = 0;

	if (st->st_size <= 0 || page <= 0)
		return 0;
	map = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return 0;
	pages = ((size_t)st->st_size + (size_t)page - 1) / (size_t)page;
	vec = malloc(pages);
	if (vec != NULL && mincore(map, (size_t)st->st_size, vec) == 0) {
		for (size_t i = 0; i < pages; i++)
			resident += vec[i] & 1;
		rc = resident * 2 >= (size_t)st->st_blocks * 512 / (size_t)page;
	}
	free(vec);
	munmap(map, (size_t)st->st_size);
	return rc;
}

/* What the stream needs from this QEMU; 0 or -1 with the error set. */
static int load_check_probe(struct restore_load *load)
{
	const char *status = json_string_value(json_object_get(load->status, "status"));
	const char *path = json_string_value(json_object_get(load->pending, "MemoryPath"));
	json_int_t bytes = json_integer_value(json_object_get(load->pending, "Bytes"));
	size_t i;
	json_t *c;

	json_array_foreach(recorded_caps(load), i, c) {
		const char *cap = json_string_value(c);

		/* background-snapshot is how it was saved, not a stream format */
		if (cap == NULL || strcmp(cap, "background-snapshot") == 0)
			continue;
		if (!migrate_has_cap(load->caps, cap))
			return task_set_error(&load->task, -ENOTSUP,
				"this QEMU (%s) does not offer the migration capability %s that the checkpoint's memory state was saved with; restore it with QEMU 9.0 or later",
				load->conn.qmp.version_string, cap), -1;
	}
	if (status == NULL || strcmp(status, "inmigrate") != 0)
		return task_set_error(&load->task, -EINVAL,
			"QEMU is not waiting for a memory state (state %s); it needs -incoming defer",
			status ? status : "unknown"), -1;
	load->use_fdset = migrate_has_cap(load->caps, "mapped-ram");
	load->mapped_ram = recorded_cap(load, "mapped-ram");
	if (load->memfd < 0)
		return task_set_error(&load->task, -load->memfd_errno, "cannot open the memory state %s: %s",
				      path ? path : "(none)", strerror(load->memfd_errno)), -1;
	if (bytes > 0 && load->membytes != bytes)
		return task_set_error(&load->task, -EINVAL,
			"the memory state %s has %lld bytes, the checkpoint recorded %lld: it was cut short or changed",
			path, load->membytes, (long long)bytes), -1;
	/* direct-io where QEMU has it and the state is not in the page cache
	 * already; a file system without O_DIRECT (tmpfs) simply reads
	 * through the page cache. */
	if (load->mapped_ram && json_object_get(load->params, "direct-io") != NULL &&
	    !load->cached) {
		load->memfd_direct = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
		load->direct_io = load->memfd_direct >= 0;
	}
	return 0;
}

static void enter_probe(struct restore_load *load)
{
	uv_timer_stop(&load->timer);
	task_send(&load->task, "query-migrate-capabilities", NULL, &load->caps);
	task_send(&load->task, "query-migrate-parameters", NULL, &load->params);
	task_send(&load->task, "query-status", NULL, &load->status);
}

static void enter_setup(struct restore_load *load)
{
	json_t *caps = json_array(), *params = json_object();
	size_t i;
	json_t *c;

	json_array_append_new(caps, json_pack("{s:s, s:b}", "capability", "events", "state", 1));
	json_array_foreach(recorded_caps(load), i, c)
		if (json_is_string(c) && strcmp(json_string_value(c), "background-snapshot") != 0)
			json_array_append_new(caps, json_pack("{s:s, s:b}", "capability",
							      json_string_value(c), "state", 1));
	task_send(&load->task, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", caps), NULL);
	if (load->mapped_ram) {
		json_object_set_new(params, "multifd-channels", json_integer(restore_load_channels()));
	}
	if (load->direct_io)
		json_object_set_new(params, "direct-io", json_true());
	if (json_object_size(params) > 0)
		task_send(&load->task, "migrate-set-parameters", params, NULL);
	else
		json_decref(params);
	if (load->use_fdset)
		task_send_ex(&load->task, "add-fd", json_pack("{s:s}", "opaque", LOAD_FDNAME),
			     load->memfd, &load->fd_reply, 0);
	else
		task_send_ex(&load->task, "getfd", json_pack("{s:s}", "fdname", LOAD_FDNAME),
			     load->memfd, NULL, 0);
}

static void enter_fd_direct(struct restore_load *load)
{
	json_t *id = json_object_get(load->fd_reply, "fdset-id");

	load->fdset_id = json_is_integer(id) ? (int)json_integer_value(id) : -1;
	if (load->direct_io)
		task_send_ex(&load->task, "add-fd", json_pack("{s:i, s:s}", "fdset-id", load->fdset_id,
							     "opaque", LOAD_FDNAME "-direct"),
			     load->memfd_direct, NULL, 0);
}

static long long load_timeout_ms(const struct restore_load *load)
{
	const char *env = getenv("QCKPT_RESTORE_LOAD_TIMEOUT");
	long long floor = env ? strtoll(env, NULL, 10) * 1000 : LOAD_MIN_TIMEOUT_MS;
	long long bytes = json_integer_value(json_object_get(load->pending, "Bytes"));
	long long ms = bytes / LOAD_MIN_RATE * 1000;

	if (floor <= 0)
		floor = LOAD_MIN_TIMEOUT_MS;
	return ms > floor ? ms : floor;
}

static void on_load_deadline(uv_timer_t *timer)
{
	struct restore_load *load = timer->data;

	if (!load->migrating || load->task.finished)
		return;
	load->migrating = 0;
	task_set_error(&load->task, -ETIMEDOUT,
		       "QEMU did not finish loading the memory state within %lld s and sent no error (QEMU 10.0.2 hangs so when a direct-io load fails; see the VM's log)",
		       load_timeout_ms(load) / 1000);
	load->task.awaiting = 0;
	task_wait(&load->task);
}

static void enter_incoming(struct restore_load *load)
{
	char uri[64];

	if (load->use_fdset)
		snprintf(uri, sizeof uri, "file:/dev/fdset/%d", load->fdset_id);
	else
		snprintf(uri, sizeof uri, "fd:%s", LOAD_FDNAME);
	verbose_vm(load->vm, "loading %s (%s%s)", json_string_value(json_object_get(load->pending, "MemoryPath")),
		   uri, load->direct_io ? ", direct-io" : load->cached ? ", from the page cache" : "");
	load->migrating = 1;
	load->incoming_ms = mono_ms();
	if (load->progress != NULL)
		progress_watch(load->progress, PROGRESS_SRC_INCOMING, &load->conn.qmp, load->memfd,
			       json_integer_value(json_object_get(load->pending, "Bytes")));
	load->task.awaiting++;
	uv_timer_start(&load->timer, on_load_deadline, (uint64_t)load_timeout_ms(load), 0);
	task_send(&load->task, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL);
}

/* Pre-started beside the old QEMU: everything set, the file handed over;
 * the load starts only once the old QEMU is gone (restore_load_go), so
 * that it fills the RAM the old one gave back (restore.c). */
static void enter_ready(struct restore_load *load)
{
	load->task.awaiting++;
	load->on_ready(load);
}

void restore_load_go(struct restore_load *load)
{
	if (load->state == LOAD_READY && !load->task.finished)
		task_arrived(&load->task);
}

/* A cont that failed before the guest resumed: its RESUME will not come.
 * (Refused while QEMU finishes the load, "not finalized", it is retried
 * by task_send_resume first.) */
static void on_cont_reply(struct task *task, struct task_call *call, int status,
			  const struct qmp_error *qerr)
{
	struct restore_load *load = task->data;

	if (status == 0 || load->resumed)
		return;
	task_set_error(task, status, "cont: %s",
		       status == QMP_ECOMMAND ? qerr->desc : qmp_strerror(status));
	task->awaiting = 0;
}

static void enter_resume(struct restore_load *load)
{
	struct task_call *call;

	if (!load->resumed)
		load->task.awaiting++; /* its RESUME event */
	call = task_send_resume(&load->task, 1, NULL, NULL);
	if (call == NULL) {
		task_set_error(&load->task, QMP_ECLOSED, "cont: the restore monitor closed");
		load->task.awaiting = 0;
		return;
	}
	call->quiet = 1;
	call->after = on_cont_reply;
}

/* What the load switched on stays on in QEMU and would be the next
 * checkpoint's setting: a direct-io left on makes its save fail ("Failed to
 * find file descriptor with matching flags", its fdset has no O_DIRECT fd).
 * Put QEMU's defaults back; failures are only warnings. */
static void enter_settle(struct restore_load *load)
{
	json_t *caps = json_array();
	size_t i = json_array_size(recorded_caps(load));

	if (load->direct_io)
		task_send_ex(&load->task, "migrate-set-parameters",
			     json_pack("{s:b}", "direct-io", 0), -1, NULL, 1);
	/* reverse order: mapped-ram off before the multifd it needs */
	while (i-- > 0) {
		const char *cap = json_string_value(json_array_get(recorded_caps(load), i));

		if (cap != NULL && strcmp(cap, "background-snapshot") != 0)
			json_array_append_new(caps, json_pack("{s:s, s:b}", "capability", cap, "state", 0));
	}
	if (json_array_size(caps) > 0)
		task_send_ex(&load->task, "migrate-set-capabilities",
			     json_pack("{s:o}", "capabilities", caps), -1, NULL, 1);
	else
		json_decref(caps);
}

static void work_record(uv_work_t *req)
{
	struct restore_load *load = req->data;
	json_t *state = catalog_load_vm(load->catalog_root, load->vm);

	json_object_del(state, "PendingRestore");
	/* a pre-started QEMU (cmd-run.c record_launch) is the VM's now */
	if (json_object_get(state, "PrestartCommandLine") != NULL) {
		json_object_set(state, "CommandLine", json_object_get(state, "PrestartCommandLine"));
		json_object_del(state, "PrestartCommandLine");
	}
	json_object_set(state, "CurrentCheckpointId", json_object_get(load->pending, "CheckpointId"));
	json_object_set(state, "CurrentCheckpointName", json_object_get(load->pending, "CheckpointName"));
	load->work_rc = catalog_write_vm(load->catalog_root, load->vm, state);
	json_decref(state);
}

static void after_record(uv_work_t *req, int status)
{
	struct restore_load *load = req->data;

	if (status < 0)
		load->work_rc = status;
	if (load->work_rc < 0)
		task_set_error(&load->task, load->work_rc, "cannot write %s/%s/vm.json: %s",
			       load->catalog_root, load->vm, strerror(-load->work_rc));
	task_arrived(&load->task);
}

static void enter_record(struct restore_load *load)
{
	load->work.data = load;
	load->task.awaiting++;
	if (uv_queue_work(load->task.loop, &load->work, work_record, after_record) < 0) {
		task_set_error(&load->task, -EIO, "cannot queue the vm.json write");
		task_arrived(&load->task);
	}
}

/* ---- the machine ------------------------------------------------------- */

static enum load_state load_next(const struct restore_load *load)
{
	switch (load->state) {
	case LOAD_ACCEPT:    return LOAD_PROBE;
	case LOAD_PROBE:     return LOAD_SETUP;
	case LOAD_SETUP:     return LOAD_FD_DIRECT;
	case LOAD_FD_DIRECT: return load->on_ready ? LOAD_READY : LOAD_INCOMING;
	case LOAD_READY:     return LOAD_INCOMING;
	case LOAD_INCOMING:  return load->guest_running ? LOAD_RESUME : LOAD_SETTLE;
	case LOAD_RESUME:    return LOAD_SETTLE;
	case LOAD_SETTLE:    return LOAD_RECORD;
	default:             return LOAD_DONE;
	}
}

static void load_enter(struct restore_load *load, enum load_state state)
{
	load->state = state;
	trace(load, "load: %s", load_state_names[state]);
	switch (state) {
	case LOAD_PROBE:     enter_probe(load); break;
	case LOAD_SETUP:     enter_setup(load); break;
	case LOAD_FD_DIRECT: enter_fd_direct(load); break;
	case LOAD_READY:     enter_ready(load); break;
	case LOAD_INCOMING:  enter_incoming(load); break;
	case LOAD_RESUME:    enter_resume(load); break;
	case LOAD_SETTLE:    enter_settle(load); break;
	case LOAD_RECORD:    enter_record(load); break;
	case LOAD_DONE:      task_finish(&load->task); return;
	default:             return;
	}
	task_wait(&load->task);
}

static void load_step(struct task *task)
{
	struct restore_load *load = task->data;
	const char *desc;

	if (load->state == LOAD_PROBE && task->error_status == 0)
		load_check_probe(load);
	if (load->state == LOAD_INCOMING && task->error_status != 0 &&
	    (desc = json_string_value(json_object_get(load->migration, "error-desc"))) != NULL) {
		task->error_status = 0;
		task_set_error(task, -EIO, "loading the memory state failed: %s", desc);
	}
	if (task->error_status != 0) {
		task_fail(task);
		return;
	}
	load_enter(load, load_next(load));
}

static void load_event(struct task *task, const char *name, json_t *data)
{
	struct restore_load *load = task->data;

	trace(load, "event %s", name);
	if (strcmp(name, "RESUME") == 0 && !load->resumed) {
		load->resumed = 1;
		load->resume_ms = (long long)(mono_ms() - load->start_ms);
		if (load->state == LOAD_RESUME)
			task_arrived(task);
	} else if (strcmp(name, "MIGRATION") == 0 && load->migrating) {
		const char *status = json_string_value(json_object_get(data, "status"));

		if (status != NULL && strcmp(status, "completed") == 0) {
			uv_timer_stop(&load->timer);
			verbose_vm(load->vm, "memory state loaded in %llu ms (+%llu ms)",
				   (unsigned long long)(mono_ms() - load->incoming_ms),
				   (unsigned long long)(mono_ms() - load->start_ms));
			load->migrating = 0;
			load->completed = 1;
			if (!load->guest_running) /* loaded is as far as it goes */
				load->resume_ms = (long long)(mono_ms() - load->start_ms);
			task_arrived(task);
		} else if (status != NULL && strcmp(status, "failed") == 0) {
			uv_timer_stop(&load->timer);
			load->migrating = 0;
			task_set_error(task, -EIO, "loading the memory state failed");
			task_send_ex(task, "query-migrate", NULL, -1, &load->migration, 1);
			task_arrived(task);
		}
	}
}

static void load_lost(struct restore_load *load)
{
	if (load->task.finished || load->state >= LOAD_SETTLE)
		return;
	task_set_error(&load->task, QMP_ECLOSED,
		       "QEMU exited before the memory state was loaded (its output: the log named above)");
	load->migrating = 0;
	load->task.awaiting = 0;
	task_wait(&load->task);
}

static void load_disconnect(struct task *task)
{
	load_lost(task->data);
}

void restore_load_qemu_exited(struct restore_load *load)
{
	load_lost(load);
}

static void load_done(struct task *task)
{
	struct restore_load *load = task->data;

	uv_timer_stop(&load->timer);
	/* the fd the progress reads goes now */
	if (load->progress != NULL)
		progress_watch(load->progress, PROGRESS_SRC_NONE, NULL, -1, -1);
	if (load->memfd >= 0)
		close(load->memfd);
	if (load->memfd_direct >= 0)
		close(load->memfd_direct);
	load->memfd = load->memfd_direct = -1;
	load->on_done(load);
}

static const struct task_ops load_ops = {
	.step = load_step,
	.event = load_event,
	.disconnect = load_disconnect,
	.done = load_done,
};

/*
 * The memory state opened, and its page cache looked at, while QEMU starts
 * (100-300 ms before it connects): mincore over a 1 GiB file took 5 ms,
 * 20 at 4 GiB, that the load no longer waits for.  Errors wait for the
 * probe, which reports them.
 */
static void load_open_memory(struct restore_load *load)
{
	const char *path = json_string_value(json_object_get(load->pending, "MemoryPath"));
	struct stat st;

	load->memfd = open(path ? path : "", O_RDONLY | O_CLOEXEC);
	if (load->memfd >= 0 && fstat(load->memfd, &st) < 0) {
		close(load->memfd);
		load->memfd = -1;
	}
	if (load->memfd < 0) {
		load->memfd_errno = errno;
		return;
	}
	load->membytes = (long long)st.st_size;
	load->cached = load->warmed || mostly_cached(load->memfd, &st);
}

void restore_load_start(struct restore_load *load, const char *vm,
			const char *catalog_root, json_t *pending,
			uint64_t start_ns, void (*on_done)(struct restore_load *))
{
	load->vm = xstrdup(vm);
	load->catalog_root = xstrdup(catalog_root);
	load->pending = json_incref(pending);
	load->start_ns = start_ns;
	load->start_ms = start_ns / 1000000;
	load->on_done = on_done;
	load->guest_running = strcmp(json_string_value(json_object_get(pending, "GuestState")) ?: "", "running") == 0;
	task_init(&load->task, load->server.loop, load->vm, &load_ops, load);
	load->state = LOAD_ACCEPT;
	load->task.awaiting = 1; /* QEMU's connection */
	load_open_memory(load);
	uv_timer_start(&load->timer, on_load_timeout, LOAD_ACCEPT_TIMEOUT_MS, 0);
}

void restore_load_close(struct restore_load *load)
{
	if (load->server_open) {
		uv_close((uv_handle_t *)&load->server, NULL);
		load->server_open = 0;
		unlink(load->sock_path);
	}
	if (load->timer_open) {
		uv_close((uv_handle_t *)&load->timer, NULL);
		load->timer_open = 0;
	}
	if (load->conn_used) {
		vmconn_close(&load->conn, NULL);
		load->conn_used = 0;
	}
}

void restore_load_free(struct restore_load *load)
{
	json_decref(load->pending);
	json_decref(load->caps);
	json_decref(load->params);
	json_decref(load->status);
	json_decref(load->fd_reply);
	json_decref(load->migration);
	free(load->vm);
	free(load->catalog_root);
	free(load->sock_path);
}
