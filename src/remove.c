/*
 * remove.c: one VM's removal of checkpoints as a task (see remove.h for the
 * states; which layers merge, and why that way, is remove-plan.c).
 * remove_step() reads top to bottom like the removal itself:
 *
 *   find the checkpoints (or a journal a killed remove left) -> the VM's
 *   monitor, or none (stopped: everything offline) -> [run state, disks,
 *   nodes, leftover jobs] -> [inactive nodes after a save: activate them
 *   (QEMU >= 10) or refuse] -> [cancel a killed remove's jobs] -> per
 *   checkpoint: plan into the journal, record gone -> per merge: a block
 *   job on the VM's own nodes (commit, active commit + pivot, stream) or
 *   qemu-img, then the catalog follows it -> freed files unlinked.
 *
 * Nothing here waits by sleeping: QEMU's JOB_STATUS_CHANGE events drive
 * the jobs, process exits drive qemu-img.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "catalog.h"
#include "chain.h"
#include "log.h"
#include "remove.h"
#include "util.h"

static void remove_enter(struct remove *r, enum remove_state state);

static void fail(struct remove *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct remove *r, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	task_vset_error(&r->task, status, fmt, ap);
	va_end(ap);
}

static const char *again(struct remove *r)
{
	return "every remaining checkpoint restores as before; run the same 'qckpt remove' again to finish";
}

/* ---- the journal ---------------------------------------------------------- */

static int journal_write(struct remove *r)
{
	char *path = remove_journal_path(r->spec.catalog_root, r->spec.vm);
	char *text = json_dumps(r->journal, JSON_INDENT(2));
	char *dir = catalog_vm_dir(r->spec.catalog_root, r->spec.vm);
	int rc = mkdir_p(dir, 0700);

	if (rc == 0)
		rc = write_file_atomic(path, text, strlen(text), 0600);
	if (rc < 0)
		fail(r, rc, "cannot write %s: %s; nothing more changed", path, strerror(-rc));
	free(dir);
	free(text);
	free(path);
	return rc;
}

static void journal_remove(struct remove *r)
{
	char *path = remove_journal_path(r->spec.catalog_root, r->spec.vm);
	char *dir = catalog_vm_dir(r->spec.catalog_root, r->spec.vm);

	if (unlink(path) == 0)
		fsync_dir(dir);
	free(dir);
	free(path);
}

static json_t *current_ops(struct remove *r)
{
	return json_object_get(json_object_get(r->journal, "Current"), "Ops");
}

static json_t *current_op(struct remove *r)
{
	return json_array_get(current_ops(r), r->op);
}

/* ---- finding the checkpoints (touches nothing) ---------------------------- */

static int has_id(json_t *records, const char *id)
{
	size_t i;
	json_t *x;

	json_array_foreach(records, i, x)
		if (strcmp(json_string_value(json_object_get(x, "Id")) ?: "", id) == 0)
			return 1;
	return 0;
}

/* VICTIM's descendants in LIST, newest first (children before parents). */
static void add_descendants(json_t *list, json_t *victim, json_t *out)
{
	size_t i;
	json_t *x;

	for (i = json_array_size(list); i-- > 0;) {
		x = json_array_get(list, i);
		if (strcmp(json_string_value(json_object_get(x, "ParentCheckpointId")) ?: "",
			   json_string_value(json_object_get(victim, "Id")) ?: "-") == 0) {
			add_descendants(list, x, out);
			if (!has_id(out, json_string_value(json_object_get(x, "Id"))))
				json_array_append(out, x);
		}
	}
}

static int is_pinned(json_t *rec)
{
	return json_is_true(json_object_get(rec, "Pinned"));
}

/* Retention: oldest first, never the current one nor a pinned one. */
static void pick_prune(struct remove *r, json_t *list)
{
	json_t *current = catalog_current(r->spec.catalog_root, r->spec.vm, list), *x;
	size_t n = json_array_size(list), i, excess;
	int64_t now = wall_ms();

	excess = r->spec.keep >= 0 && n > (size_t)r->spec.keep ? n - (size_t)r->spec.keep : 0;
	json_array_foreach(list, i, x) {
		int64_t born = json_integer_value(json_object_get(x, "CreationEpochMs"));
		int old = r->spec.older_than_ms > 0 && born > 0 && now - born > r->spec.older_than_ms;

		if (x == current || is_pinned(x))
			continue;
		if (excess > 0 || old) {
			json_array_append(r->victims, x);
			if (excess > 0)
				excess--;
		}
	}
}

static int remove_find(struct remove *r)
{
	json_t *list = catalog_list(r->spec.catalog_root, r->spec.vm), *victim, *state;
	char *jpath = remove_journal_path(r->spec.catalog_root, r->spec.vm);
	const char *pending;
	char err[2048];
	size_t i;
	json_t *x;

	r->victims = json_array();
	r->removed = json_array();
	r->journal = json_load_file(jpath, 0, NULL);
	free(jpath);
	if (json_is_object(r->journal)) {
		verbose_vm(r->spec.vm, "finishing the removal a killed 'qckpt remove' left in its journal");
		json_array_extend(r->victims, json_object_get(r->journal, "Victims"));
	} else {
		json_decref(r->journal);
		r->journal = json_pack("{s:s, s:[]}", "VM", r->spec.vm, "Victims");
	}
	if (r->spec.checkpoint != NULL) {
		victim = catalog_find_checkpoint(list, r->spec.checkpoint, err, sizeof err);
		if (victim == NULL && json_array_size(r->victims) == 0) {
			json_decref(list);
			return fail(r, -ENOENT, "%s", err), -1;
		}
		if (victim != NULL && r->spec.including_children)
			add_descendants(list, victim, r->victims);
		if (victim != NULL && !has_id(r->victims, json_string_value(json_object_get(victim, "Id"))))
			json_array_append(r->victims, victim);
	} else {
		pick_prune(r, list);
	}
	json_array_foreach(r->victims, i, x)
		if (catalog_record_qemu_host(x) != NULL) {
			json_decref(list);
			return fail(r, -ENOTSUP, "checkpoint '%s' was taken through a network monitor: its images and memory state are files on %s, which qckpt does not reach; nothing changed: merge its overlay there with block-commit (qckpt qmp) and delete its memory state there, or run qckpt on that host",
				    json_string_value(json_object_get(x, "Name")) ?: "?",
				    catalog_record_qemu_host(x)), -1;
		}
	state = catalog_load_vm(r->spec.catalog_root, r->spec.vm);
	pending = json_string_value(json_object_get(json_object_get(state, "PendingRestore"), "CheckpointId"));
	json_array_foreach(r->victims, i, x)
		if (pending != NULL && strcmp(pending, json_string_value(json_object_get(x, "Id")) ?: "") == 0) {
			json_decref(state);
			json_decref(list);
			return fail(r, -EBUSY, "a restore to checkpoint '%s' is pending: let 'qckpt run' (or 'qckpt restore' again) finish it first; nothing changed",
				    json_string_value(json_object_get(x, "Name")) ?: "?"), -1;
		}
	json_decref(state);
	json_decref(list);
	return 0;
}

/* ---- the running QEMU ------------------------------------------------------ */

static void on_conn_ready(struct vmconn *conn, int status)
{
	struct remove *r = conn->data;

	if (status < 0 && (status == UV_ENOENT || status == UV_ECONNREFUSED)) {
		r->online = 0; /* nobody serves the monitor: the VM is stopped */
	} else if (status < 0) {
		fail(r, status, "%s; nothing changed", conn->error);
	} else {
		r->online = 1;
		task_attach(&r->task, conn);
	}
	task_arrived(&r->task);
}

static void enter_connect(struct remove *r)
{
	r->conn.data = r;
	r->conn_used = 1;
	r->task.awaiting++;
	if (vmconn_open(r->loop, &r->conn, r->spec.vm, r->spec.monitor,
			r->spec.expect_name, 10000, on_conn_ready) < 0)
		r->task.awaiting--; /* no socket at all: stopped */
}

static void enter_probe(struct remove *r)
{
	task_send(&r->task, "query-status", NULL, &r->status);
	task_send(&r->task, "query-block", NULL, &r->blocks);
	task_send(&r->task, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &r->nodes);
	task_send(&r->task, "query-jobs", NULL, &r->jobs);
}

/* The chains QEMU runs on, one array of files per disk. */
static int read_running(struct remove *r)
{
	struct disk *disks = NULL;
	char err[512];
	int n = blockdev_disks_from_query(r->blocks, &disks, err, sizeof err);

	json_decref(r->running);
	r->running = json_array();
	if (n < 0)
		return fail(r, -EINVAL, "%s; nothing changed", err), -1;
	for (int i = 0; i < n; i++)
		json_array_append_new(r->running, json_pack("{s:s, s:s, s:s, s:O}", "Device", disks[i].device,
				  "Node", disks[i].node, "Image", disks[i].image, "Chain", disks[i].chain));
	blockdev_disks_free(disks, (size_t)n);
	return 0;
}

static json_t *running_chains(struct remove *r)
{
	json_t *chains = json_array(), *d;
	size_t i;

	json_array_foreach(r->running, i, d)
		json_array_append(chains, json_object_get(d, "Chain"));
	return chains;
}

/* The running disk whose chain holds IMAGE, or NULL. */
static json_t *running_disk(struct remove *r, const char *image)
{
	size_t i, j;
	json_t *d, *c;

	json_array_foreach(r->running, i, d)
		json_array_foreach(json_object_get(d, "Chain"), j, c)
			if (chain_same_file(json_string_value(c), image))
				return d;
	return NULL;
}

/* QEMU's format node for IMAGE. */
static const char *node_of(struct remove *r, const char *image)
{
	size_t i;
	json_t *n;

	json_array_foreach(r->nodes, i, n) {
		const char *drv = json_string_value(json_object_get(n, "drv")) ?: "";
		const char *file = json_string_value(json_object_get(n, "file"));

		if (file != NULL && (strcmp(drv, "qcow2") == 0 || strcmp(drv, "raw") == 0) &&
		    chain_same_file(file, image))
			return json_string_value(json_object_get(n, "node-name"));
	}
	return NULL;
}

static int nodes_inactive(struct remove *r)
{
	size_t i;
	json_t *n;

	if (strcmp(json_string_value(json_object_get(r->status, "status")) ?: "", "postmigrate") == 0)
		return 1;
	json_array_foreach(r->nodes, i, n)
		if (json_is_false(json_object_get(n, "active")))
			return 1;
	return 0;
}

static int schema_has_command(json_t *schema, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach(schema, i, e)
		if (strcmp(json_string_value(json_object_get(e, "meta-type")) ?: "", "command") == 0 &&
		    strcmp(json_string_value(json_object_get(e, "name")) ?: "", name) == 0)
			return 1;
	return 0;
}

static void undo_activate(struct task *task, void *arg)
{
	struct remove *r = arg;

	if (r->activated)
		task_send_ex(task, "blockdev-set-active", json_pack("{s:b}", "active", 0), -1, NULL, 1);
	r->activated = 0;
}

static void enter_activate(struct remove *r)
{
	if (r->schema == NULL) {
		task_send(&r->task, "query-qmp-schema", NULL, &r->schema);
		return;
	}
	if (!schema_has_command(r->schema, "blockdev-set-active")) {
		fail(r, -ENOTSUP, "its disks are inactive after a save (run state %s) and QEMU %s cannot activate them while the guest is paused (blockdev-set-active is QEMU 10.0's): resume it ('qckpt qmp %s cont') or shut it down, then remove again; nothing changed",
		     json_string_value(json_object_get(r->status, "status")) ?: "?",
		     r->conn.qmp.version_string, r->spec.vm);
		return;
	}
	verbose_vm(r->spec.vm, "activating its block nodes (inactive after a save) for the merge");
	r->activated = 1;
	task_on_undo(&r->task, undo_activate, r);
	task_send(&r->task, "blockdev-set-active", json_pack("{s:b}", "active", 1), NULL);
}

static void enter_cancel(struct remove *r)
{
	size_t i;
	json_t *j;

	r->cancel_ids = json_array();
	json_array_foreach(r->jobs, i, j) {
		const char *id = json_string_value(json_object_get(j, "id")) ?: "";
		const char *st = json_string_value(json_object_get(j, "status")) ?: "";

		if (strncmp(id, "qckpt-rm-", 9) != 0)
			continue;
		verbose_vm(r->spec.vm, "a killed remove's job %s is %s: cancelling it (the merge starts again)", id, st);
		if (strcmp(st, "concluded") == 0) {
			task_send(&r->task, "job-dismiss", json_pack("{s:s}", "id", id), NULL);
			continue;
		}
		json_array_append_new(r->cancel_ids, json_string(id));
		r->task.awaiting++;
		task_send(&r->task, "job-cancel", json_pack("{s:s}", "id", id), NULL);
	}
}

static int leftover_jobs(struct remove *r)
{
	size_t i;
	json_t *j;

	json_array_foreach(r->jobs, i, j)
		if (strncmp(json_string_value(json_object_get(j, "id")) ?: "", "qckpt-rm-", 9) == 0)
			return 1;
	return 0;
}

/* ---- one checkpoint: plan, journal, record ---------------------------------- */

static void enter_plan(struct remove *r)
{
	json_t *victim = json_array_get(r->victims, 0), *cur = json_object_get(r->journal, "Current");
	const char *id = json_string_value(json_object_get(victim, "Id")) ?: "";
	char err[1024];
	size_t i;
	json_t *x;

	if (cur == NULL || strcmp(json_string_value(json_object_get(json_object_get(cur, "Record"), "Id")) ?: "", id) != 0) {
		json_t *list = catalog_list(r->spec.catalog_root, r->spec.vm);
		json_t *state = catalog_load_vm(r->spec.catalog_root, r->spec.vm);
		json_t *notes = json_array(), *chains = r->online ? running_chains(r) : NULL;
		json_t *ops = remove_plan(list, victim, state, chains, notes);

		json_array_foreach(notes, i, x)
			verbose_vm(r->spec.vm, "%s", json_string_value(x));
		cur = json_pack("{s:O, s:o}", "Record", victim, "Ops", ops);
		json_object_set_new(r->journal, "Current", cur);
		json_decref(notes);
		json_decref(chains);
		json_decref(state);
		json_decref(list);
	}
	json_object_set(r->journal, "Victims", r->victims);
	if (journal_write(r) < 0)
		return;
	if (remove_forget_record(r->spec.catalog_root, r->spec.vm, victim, err, sizeof err) < 0) {
		fail(r, -EIO, "%s; %s", err, again(r));
		return;
	}
	verbose_vm(r->spec.vm, "removing checkpoint '%s' (%.8s): %zu step(s)",
		   json_string_value(json_object_get(victim, "Name")) ?: "?", id,
		   json_array_size(current_ops(r)));
	for (r->op = 0; current_op(r) != NULL && json_is_true(json_object_get(current_op(r), "Done")); r->op++)
		;
}

/* ---- one merge ---------------------------------------------------------------- */

static void queue_img(struct remove *r, json_t *argv)
{
	json_array_insert_new(argv, 0, json_string(qemu_img_program()));
	json_array_append_new(r->argvs, argv);
}

static void spawn_next(struct remove *r);

static void on_img_closed(uv_handle_t *h)
{
	struct remove *r = h->data;

	if (h == (uv_handle_t *)&r->proc)
		r->proc_open = 0;
	else
		r->proc_err_open = 0;
	if (r->proc_open || r->proc_err_open)
		return;
	if (r->task.error_status == 0 && json_array_size(r->argvs) > 0)
		spawn_next(r);
	else
		task_arrived(&r->task);
}

static void on_img_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	struct remove *r = h->data;

	buf->base = r->proc_errbuf + r->proc_errlen;
	buf->len = sizeof r->proc_errbuf - 1 - r->proc_errlen;
}

static void on_img_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct remove *r = s->data;

	if (n > 0) {
		r->proc_errlen += (size_t)n;
		if (r->proc_errlen >= sizeof r->proc_errbuf - 1)
			r->proc_errlen = sizeof r->proc_errbuf - 2;
		return;
	}
	if (n < 0)
		uv_close((uv_handle_t *)s, on_img_closed);
}

static void on_img_exit(uv_process_t *proc, int64_t status, int signum)
{
	struct remove *r = proc->data;

	if (status != 0 || signum != 0) {
		char *nl;

		r->proc_errbuf[r->proc_errlen] = '\0';
		if ((nl = strchr(r->proc_errbuf, '\n')) != NULL)
			*nl = '\0';
		if (strstr(r->proc_errbuf, "lock") != NULL)
			fail(r, -EBUSY, "%s: another process (a QEMU?) holds the image: stop it, or remove while the VM runs with its monitor answering; %s",
			     r->proc_errbuf, again(r));
		else
			fail(r, -EIO, "qemu-img failed (exit %d): %s; %s",
			     signum ? 128 + signum : (int)status, r->proc_errbuf, again(r));
	}
	uv_close((uv_handle_t *)proc, on_img_closed);
}

static void spawn_next(struct remove *r)
{
	json_t *argv = json_incref(json_array_get(r->argvs, 0));
	size_t n = json_array_size(argv);
	char **args = xcalloc(n + 1, sizeof *args);
	uv_process_options_t po = { 0 };
	uv_stdio_container_t stdio[3] = {
		{ .flags = UV_IGNORE }, { .flags = UV_IGNORE },
		{ .flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = NULL },
	};
	int rc;

	json_array_remove(r->argvs, 0);
	for (size_t i = 0; i < n; i++)
		args[i] = (char *)json_string_value(json_array_get(argv, i));
	verbose_vm(r->spec.vm, "%s %s %s ...", args[0], args[1], args[n - 1]);
	uv_pipe_init(r->loop, &r->proc_err, 0);
	r->proc_err.data = r;
	r->proc_err_open = 1;
	stdio[2].data.stream = (uv_stream_t *)&r->proc_err;
	r->proc_errlen = 0;
	po.file = args[0];
	po.args = args;
	po.stdio = stdio;
	po.stdio_count = 3;
	po.exit_cb = on_img_exit;
	r->proc.data = r;
	rc = uv_spawn(r->loop, &r->proc, &po);
	r->proc_open = 1;
	if (rc < 0) {
		fail(r, rc, "cannot run %s: %s; %s", args[0], uv_strerror(rc), again(r));
		uv_close((uv_handle_t *)&r->proc, on_img_closed);
		uv_close((uv_handle_t *)&r->proc_err, on_img_closed);
	} else {
		uv_read_start((uv_stream_t *)&r->proc_err, on_img_alloc, on_img_read);
	}
	free(args);
	json_decref(argv);
}

static void run_queued(struct remove *r)
{
	if (json_array_size(r->argvs) == 0)
		return;
	r->task.awaiting++;
	spawn_next(r);
}

/* After TOP was committed into BASE: TOP's children (that QEMU did not
 * move) now back onto BASE, which reads as TOP did: a header change. */
static void queue_rebase_children(struct remove *r, const char *top, const char *base,
				  const char *fmt)
{
	json_t *list = catalog_list(r->spec.catalog_root, r->spec.vm);
	json_t *state = catalog_load_vm(r->spec.catalog_root, r->spec.vm);
	json_t *known = json_object(), *kids, *k, *d;
	size_t i, j;

	json_array_foreach(list, i, k)
		json_array_foreach(json_object_get(k, "Disks"), j, d) {
			const char *p = json_string_value(json_object_get(d, "CheckpointImage"));
			const char *q = json_string_value(json_object_get(d, "ActiveImage"));

			if (p)
				json_object_set_new(known, p, json_true());
			if (q)
				json_object_set_new(known, q, json_true());
		}
	json_array_foreach(json_object_get(state, "Disks"), i, d)
		json_array_foreach(json_object_get(d, "Chain"), j, k)
			json_object_set_new(known, json_string_value(k), json_true());
	kids = remove_children(top, known);
	json_array_foreach(kids, i, k)
		queue_img(r, json_pack("[s, s, s, s, s, s, s, O]", "rebase", "-q", "-u", "-b", base,
				       "-F", fmt, k));
	json_decref(kids);
	json_decref(known);
	json_decref(state);
	json_decref(list);
}

static void start_job(struct remove *r, const char *command, json_t *args, int active)
{
	snprintf(r->job_id, sizeof r->job_id, "qckpt-rm-%d-%d", (int)getpid(), ++r->job_seq);
	json_object_set_new(args, "job-id", json_string(r->job_id));
	json_object_set_new(args, "auto-dismiss", json_false());
	r->job_active = active;
	r->job_pivot_sent = 0;
	r->job_concluded = 0;
	json_decref(r->job_info);
	r->job_info = NULL;
	/* remove_step waits for its "concluded" (job_concluded) */
	task_send(&r->task, command, args, NULL);
	/* the figures of the merge are the job's (query-jobs), asked at
	 * once too: a small merge ends before the first tick */
	progress_watch_job(&r->progress, &r->conn.qmp, r->job_id);
	progress_poke(&r->progress);
	/* testing: QCKPT_TEST_REMOVE_STOP_AT=job, right after a block job
	 * was sent, to kill qckpt while QEMU merges (log.h) */
	log_test_stop_at("QCKPT_TEST_REMOVE_STOP_AT", r->spec.vm, "job");
}

/* A merge the running QEMU does; 1 if it took it, -1 on error. */
static int merge_online(struct remove *r, json_t *o)
{
	const char *kind = json_string_value(json_object_get(o, "Op"));
	const char *top = json_string_value(json_object_get(o, "Top"));
	const char *base = json_string_value(json_object_get(o, "Base"));
	json_t *disk = r->online ? running_disk(r, top) : NULL;
	const char *root, *tnode, *bnode;

	if (disk == NULL)
		return 0;
	root = json_string_value(json_object_get(disk, "Node"));
	tnode = node_of(r, top);
	bnode = node_of(r, base);
	if (root == NULL || tnode == NULL || bnode == NULL) {
		fail(r, -ENOENT, "QEMU runs %s but has no node for %s; %s", top,
		     tnode == NULL ? top : base, again(r));
		return -1;
	}
	if (strcmp(kind, "stream") == 0) {
		verbose_vm(r->spec.vm, "block-stream of %s's backing data into %s (QEMU)", base, top);
		start_job(r, "block-stream", json_pack("{s:s, s:s}", "device", tnode, "base-node", bnode), 0);
	} else if (strcmp(tnode, root) == 0 ||
		   chain_same_file(json_string_value(json_object_get(disk, "Image")) ?: "", top)) {
		verbose_vm(r->spec.vm, "active commit of %s into %s, then the pivot (QEMU)", top, base);
		start_job(r, "block-commit", json_pack("{s:s, s:s}", "device", root, "base-node", bnode), 1);
	} else {
		verbose_vm(r->spec.vm, "block-commit of %s into %s (QEMU)", top, base);
		start_job(r, "block-commit", json_pack("{s:s, s:s, s:s}", "device", root,
			  "top-node", tnode, "base-node", bnode), 0);
	}
	return 1;
}

static void merge_offline(struct remove *r, json_t *o)
{
	const char *kind = json_string_value(json_object_get(o, "Op"));
	const char *top = json_string_value(json_object_get(o, "Top"));
	const char *base = json_string_value(json_object_get(o, "Base"));
	const char *fmt = json_string_value(json_object_get(o, "BaseFormat")) ?: "qcow2";
	char *backing = NULL, *abs = NULL;
	struct stat st;

	if (stat(top, &st) < 0)
		return; /* merged and dropped before */
	qcow2_backing_file(top, &backing);
	abs = backing ? chain_backing_path(top, backing) : NULL;
	if (strcmp(kind, "stream") == 0) {
		if (abs == NULL || !chain_same_file(abs, base)) {
			verbose_vm(r->spec.vm, "qemu-img rebase of %s onto %s (its backing data copied in)", top, base);
			queue_img(r, json_pack("[s, s, s, s, s, s, s]", "rebase", "-q", "-b", base, "-F", fmt, top));
		}
	} else if (abs != NULL && chain_same_file(abs, base)) {
		verbose_vm(r->spec.vm, "qemu-img commit of %s into %s", top, base);
		queue_img(r, json_pack("[s, s, s, s]", "commit", "-q", "-d", top));
		queue_rebase_children(r, top, base, fmt);
	} else {
		fail(r, -EINVAL, "%s was to be committed into %s, but its header names %s as backing file: the chain changed under the remove; nothing more changed",
		     top, base, abs ? abs : "none");
	}
	free(backing);
	free(abs);
}

static void enter_merge(struct remove *r)
{
	json_t *o = current_op(r);
	const char *top = json_string_value(json_object_get(o, "Top"));
	int pivoting = json_is_true(json_object_get(o, "Pivoting"));

	json_decref(r->argvs);
	r->argvs = json_array();
	if (pivoting && !r->online) {
		fail(r, -EAGAIN, "a killed remove was switching the VM from %s to %s and QEMU is gone too, so which of the two the guest wrote last cannot be told: check both (qemu-img compare), keep the right one in vm.json, then remove again",
		     top, json_string_value(json_object_get(o, "Base")));
		return;
	}
	if (r->online && strcmp(json_string_value(json_object_get(o, "Op")) ?: "", "commit") == 0 &&
	    running_disk(r, top) == NULL &&
	    running_disk(r, json_string_value(json_object_get(o, "Base"))) != NULL) {
		/* QEMU finished this commit (and its pivot) before a killed
		 * remove could say so: the one reader of Base was Top, so
		 * Base runs without Top only after the commit. */
		queue_rebase_children(r, top, json_string_value(json_object_get(o, "Base")),
				      json_string_value(json_object_get(o, "BaseFormat")) ?: "qcow2");
		run_queued(r);
		return;
	}
	if (merge_online(r, o) != 0)
		return;
	merge_offline(r, o);
	run_queued(r);
}

/* Whether O is the last merge that streams its layer away (the running
 * chain has one child of it, but other streams may follow offline). */
static int last_stream_of(struct remove *r, json_t *o)
{
	json_t *x;
	size_t i;

	json_array_foreach(current_ops(r), i, x)
		if (i > r->op && json_equal(json_object_get(x, "Replaces"), json_object_get(o, "Replaces")))
			return 0;
	return 1;
}

/*
 * QEMU keeps a node that blockdev-add made (a checkpoint's overlay) until
 * blockdev-del, also once a job took it out of the chain: it would hold
 * the file open, its locks, and a backing reference that keeps the node
 * below from being a root (the next active commit: "Need a root block
 * node").  Format nodes first, then their protocol nodes; -drive's
 * anonymous nodes ("#block...") go by themselves.
 */
static void delete_nodes(struct remove *r, const char *image)
{
	for (int pass = 0; pass < 2; pass++) {
		size_t i;
		json_t *n;

		json_array_foreach(r->nodes, i, n) {
			const char *name = json_string_value(json_object_get(n, "node-name")) ?: "#";
			const char *file = json_string_value(json_object_get(n, "file"));
			int proto = strcmp(json_string_value(json_object_get(n, "drv")) ?: "", "file") == 0;

			if (name[0] == '#' || file == NULL || proto != pass || !chain_same_file(file, image))
				continue;
			task_send_ex(&r->task, "blockdev-del", json_pack("{s:s}", "node-name", name), -1, NULL, 1);
		}
	}
}

/* The job's end: its error, the nodes and children it left on TOP. */
static void merge_job_done(struct remove *r)
{
	json_t *o = current_op(r), *j;
	size_t i;

	json_array_foreach(r->job_info, i, j) {
		const char *err = json_string_value(json_object_get(j, "error"));

		if (strcmp(json_string_value(json_object_get(j, "id")) ?: "", r->job_id) == 0 && err != NULL)
			fail(r, -EIO, "QEMU's %s job on disk %s failed: %s; %s",
			     json_string_value(json_object_get(j, "type")) ?: "block",
			     json_string_value(json_object_get(o, "Device")) ?: "?", err, again(r));
	}
	r->job_id[0] = '\0';
	if (r->task.error_status != 0)
		return;
	if (strcmp(json_string_value(json_object_get(o, "Op")) ?: "", "commit") == 0)
		delete_nodes(r, json_string_value(json_object_get(o, "Top")));
	else if (json_object_get(o, "Replaces") != NULL && last_stream_of(r, o))
		delete_nodes(r, json_string_value(json_object_get(o, "Replaces")));
	json_decref(r->argvs);
	r->argvs = json_array();
	if (strcmp(json_string_value(json_object_get(o, "Op")) ?: "", "commit") == 0)
		queue_rebase_children(r, json_string_value(json_object_get(o, "Top")),
				      json_string_value(json_object_get(o, "Base")),
				      json_string_value(json_object_get(o, "BaseFormat")) ?: "qcow2");
}

/* ---- after a merge ------------------------------------------------------------- */

static void enter_fixup(struct remove *r)
{
	json_t *o = current_op(r);
	int commit = strcmp(json_string_value(json_object_get(o, "Op")) ?: "", "commit") == 0;
	char err[1024];

	const char *replaces = json_string_value(json_object_get(o, "Replaces"));
	int rc;

	if (commit)
		rc = remove_fixup_catalog(r->spec.catalog_root, r->spec.vm,
					  json_string_value(json_object_get(o, "Top")),
					  json_string_value(json_object_get(o, "Base")),
					  json_string_value(json_object_get(o, "BaseFormat")) ?: "qcow2",
					  err, sizeof err);
	else
		rc = remove_fixup_catalog(r->spec.catalog_root, r->spec.vm, replaces,
					  json_string_value(json_object_get(o, "Top")), "qcow2",
					  err, sizeof err);
	if (rc < 0) {
		fail(r, -EIO, "%s; %s", err, again(r));
		return;
	}
	json_object_set_new(o, "Done", json_true());
	json_object_del(o, "Pivoting");
	journal_write(r);
	r->op++;
}

static int is_drop(json_t *o)
{
	return strcmp(json_string_value(json_object_get(o, "Op")) ?: "", "drop") == 0;
}

static void enter_drop(struct remove *r)
{
	json_t *victim = json_object_get(json_object_get(r->journal, "Current"), "Record"), *o;
	const char *mem = json_string_value(json_object_get(json_object_get(victim, "MemoryState"), "Path"));
	const char *dir = json_string_value(json_object_get(victim, "Path"));
	char *vmdir = catalog_vm_dir(r->spec.catalog_root, r->spec.vm);
	size_t i;

	json_array_foreach(current_ops(r), i, o) {
		const char *img = json_string_value(json_object_get(o, "Top"));
		int rc;

		if (!is_drop(o))
			continue;
		rc = remove_drop_image(r->spec.catalog_root, r->spec.vm, img);
		if (rc == 1)
			verbose_vm(r->spec.vm, "unlinked %s", img);
		else if (rc == 0)
			verbose_vm(r->spec.vm, "kept %s: an image or the catalog still names it", img);
		else
			warn_vm(r->spec.vm, "cannot unlink %s: %s", img, strerror(-rc));
	}
	if (mem != NULL && unlink(mem) < 0 && errno != ENOENT)
		warn_vm(r->spec.vm, "cannot unlink the memory state %s: %s", mem, strerror(errno));
	/* only a directory of this VM's catalog */
	if (dir != NULL && strncmp(dir, vmdir, strlen(vmdir)) == 0 && dir[strlen(vmdir)] == '/')
		remove_dir_files(dir);
	free(vmdir);
	json_array_append(r->removed, victim);
	json_array_remove(r->victims, 0);
	json_object_del(r->journal, "Current");
	json_object_set(r->journal, "Victims", r->victims);
	if (json_array_size(r->victims) > 0)
		journal_write(r);
	else
		journal_remove(r);
}

/* ---- the machine ----------------------------------------------------------------- */

static enum remove_state after_merges(struct remove *r)
{
	while (current_op(r) != NULL && is_drop(current_op(r)))
		r->op++;
	return current_op(r) != NULL ? RM_MERGE : RM_DROP;
}

static enum remove_state remove_next(struct remove *r)
{
	switch (r->state) {
	case RM_FIND:
		return json_array_size(r->victims) == 0 ? RM_DONE : RM_CONNECT;
	case RM_CONNECT:
		return r->online ? RM_PROBE : RM_PLAN;
	case RM_PROBE:
		if (nodes_inactive(r))
			return RM_ACTIVATE;
		/* fallthrough */
	case RM_ACTIVATE:
		if (r->state == RM_ACTIVATE && !r->activated)
			return RM_ACTIVATE; /* the schema is in: now the command */
		return leftover_jobs(r) ? RM_CANCEL : RM_PLAN;
	case RM_CANCEL:
		return RM_PLAN;
	case RM_PLAN:
	case RM_FIXUP:
		return after_merges(r);
	case RM_MERGE:
		return RM_FIXUP;
	case RM_DROP:
		if (json_array_size(r->victims) > 0)
			return r->online ? RM_REPROBE : RM_PLAN;
		return r->activated ? RM_DEACTIVATE : RM_DONE;
	case RM_REPROBE:
		return RM_PLAN;
	default:
		return RM_DONE;
	}
}

/* What the user sees of each state (progress.h). */
static const char *remove_phase(enum remove_state state)
{
	switch (state) {
	case RM_MERGE:      return "merging";
	case RM_PLAN:
	case RM_FIXUP:
	case RM_DROP:       return "recording";
	case RM_DEACTIVATE: return "finishing";
	default:            return "checking";
	}
}

static void remove_enter(struct remove *r, enum remove_state state)
{
	r->state = state;
	if (state != RM_DONE)
		task_phase(&r->task, remove_phase(state));
	switch (state) {
	case RM_CONNECT:    enter_connect(r); break;
	case RM_PROBE:      enter_probe(r); break;
	case RM_ACTIVATE:   enter_activate(r); break;
	case RM_CANCEL:     enter_cancel(r); break;
	case RM_PLAN:       enter_plan(r); break;
	case RM_MERGE:      enter_merge(r); break;
	case RM_FIXUP:      enter_fixup(r); break;
	case RM_DROP:       enter_drop(r); break;
	case RM_REPROBE:    enter_probe(r); break;
	case RM_DEACTIVATE: undo_activate(&r->task, r); break;
	case RM_DONE:       task_finish(&r->task); return;
	default:            return;
	}
	task_wait(&r->task);
}

static void remove_step(struct task *task)
{
	struct remove *r = task->data;

	if (r->state == RM_MERGE && r->job_id[0] != '\0' && !r->job_concluded &&
	    task->error_status == 0)
		return; /* the job runs: its JOB_STATUS_CHANGE events come */
	if (task->error_status == 0 && (r->state == RM_PROBE || r->state == RM_REPROBE))
		read_running(r);
	if (task->error_status == 0 && r->state == RM_MERGE && r->job_id[0] != '\0') {
		/* the job is over; its children's rebases (if any) come next */
		merge_job_done(r);
		if (task->error_status == 0 && json_array_size(r->argvs) > 0) {
			run_queued(r);
			task_wait(task);
			return;
		}
	}
	if (task->error_status == 0 && r->interrupted && r->state <= RM_CANCEL)
		fail(r, -EINTR, "interrupted; nothing changed");
	else if (task->error_status == 0 && r->interrupted && r->state == RM_DROP &&
		 json_array_size(r->victims) > 0)
		fail(r, -EINTR, "interrupted after removing %zu checkpoint(s); %s",
		     json_array_size(r->removed), again(r));
	if (task->error_status != 0) {
		task_fail(task);
		return;
	}
	remove_enter(r, remove_next(r));
}

static void remove_event(struct task *task, const char *name, json_t *data)
{
	struct remove *r = task->data;
	const char *id = json_string_value(json_object_get(data, "id")) ?: "";
	const char *st = json_string_value(json_object_get(data, "status")) ?: "";
	size_t i;
	json_t *c;

	if (strcmp(name, "JOB_STATUS_CHANGE") != 0)
		return;
	json_array_foreach(r->cancel_ids, i, c)
		if (strcmp(json_string_value(c), id) == 0 && strcmp(st, "concluded") == 0) {
			task_send(task, "job-dismiss", json_pack("{s:s}", "id", id), NULL);
			task_arrived(task);
			return;
		}
	if (r->job_id[0] == '\0' || strcmp(id, r->job_id) != 0)
		return;
	/* Only an active commit gets ready (a commit whose top QEMU found to
	 * be the active layer too) */
	if (strcmp(st, "ready") == 0 && !r->job_pivot_sent) {
		/* Before the pivot: a remove killed from here on must not
		 * commit the old active layer offline over newer writes. */
		json_object_set_new(current_op(r), "Pivoting", json_true());
		if (journal_write(r) < 0) {
			task_send(task, "job-cancel", json_pack("{s:s}", "id", id), NULL);
		} else {
			verbose_vm(r->spec.vm, "the commit is in step with the active layer: pivot");
			task_send(task, "job-complete", json_pack("{s:s}", "id", id), NULL);
		}
		r->job_pivot_sent = 1;
	} else if (strcmp(st, "concluded") == 0 && !r->job_concluded) {
		r->job_concluded = 1;
		task_send(task, "query-jobs", NULL, &r->job_info);
		task_send(task, "job-dismiss", json_pack("{s:s}", "id", id), NULL);
		task_arrived(task);
	}
}

static void remove_disconnect(struct task *task)
{
	struct remove *r = task->data;

	fail(r, QMP_ECLOSED, "QEMU closed its monitor during the removal (did it exit?); %s", again(r));
	/* a qemu-img under way steps the task when it exits */
	if (!r->proc_open)
		task_fail(task);
}

static void remove_done(struct task *task)
{
	struct remove *r = task->data;

	r->finished = 1;
	if (r->conn_used)
		vmconn_close(&r->conn, NULL);
	r->conn_used = 0;
	r->on_done(r);
}

static const struct task_ops remove_ops = {
	.step = remove_step,
	.event = remove_event,
	.disconnect = remove_disconnect,
	.done = remove_done,
};

void remove_start(struct remove *r, uv_loop_t *loop, void (*on_done)(struct remove *r))
{
	r->loop = loop;
	r->on_done = on_done;
	task_init(&r->task, loop, r->spec.vm, &remove_ops, r);
	progress_start(&r->progress, loop, r->spec.vm);
	r->task.progress = &r->progress;
	task_phase(&r->task, "checking");
	r->state = RM_FIND;
	if (remove_find(r) < 0) {
		task_finish(&r->task);
		return;
	}
	remove_step(&r->task);
}

void remove_interrupt(struct remove *r)
{
	r->interrupted = 1;
}

void remove_free(struct remove *r)
{
	json_decref(r->victims);
	json_decref(r->removed);
	json_decref(r->journal);
	json_decref(r->status);
	json_decref(r->blocks);
	json_decref(r->nodes);
	json_decref(r->jobs);
	json_decref(r->schema);
	json_decref(r->job_info);
	json_decref(r->running);
	json_decref(r->cancel_ids);
	json_decref(r->argvs);
	free(r->spec.vm);
	free(r->spec.monitor);
	free(r->spec.expect_name);
	free(r->spec.catalog_root);
	free(r->spec.checkpoint);
	progress_free(&r->progress);
	free(r);
}
