/*
 * vmnames.h: the VMs a command acts on, as the user gives them:
 * NAME[,NAME...] words, or "-" for standard input holding names one per line
 * or VM objects as `qckpt vms --json` prints them (Hyper-V's pipeline:
 * `qckpt vms --json | qckpt checkpoint -`).  Shared by every command that
 * takes many VMs (checkpoint, restore, ...), so they read them alike.
 */
#ifndef VMNAMES_H
#define VMNAMES_H

#include <stddef.h>

struct vm_names {
	char **v;
	size_t n;
};

/* Add NAME once: the same VM twice would wait on its own monitor. */
void vm_names_add(struct vm_names *l, const char *name);
/* Add each name of a comma-separated LIST (empty pieces skipped). */
void vm_names_add_list(struct vm_names *l, const char *list);
/* Standard input: names one per line, or `qckpt vms --json` objects.
 * 0, or -1 after printing a line for each bad object. */
int vm_names_read_stdin(struct vm_names *l);
void vm_names_free(struct vm_names *l);

#endif
