/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * netray exec kernel/user ABI: the single source of truth for the structs the
 * exec tracer (exec.bpf.c) shares with userspace (crates/netray-exec). Rust
 * gets them from BTF (netray_ebpf::abi), never by hand. Laid out with explicit
 * padding so C and Rust agree byte for byte.
 */
#ifndef NETRAY_EXEC_ABI_H
#define NETRAY_EXEC_ABI_H

#include <linux/types.h>

enum nr_exec_limits {
	NR_EXEC_ARGS = 20,		/* argv entries captured */
	NR_EXEC_ARG_LEN = 128,		/* bytes per argument, NUL included */
	NR_EXEC_FILENAME_LEN = 256,	/* bytes of the path, NUL included */
	NR_EXEC_COMM_LEN = 16,		/* TASK_COMM_LEN */
};

/* nr_exec_event.flags */
enum nr_exec_flags {
	NR_EXEC_AT = 1 << 0,		  /* execveat (else execve) */
	NR_EXEC_ARGV_MORE = 1 << 1,	  /* more than NR_EXEC_ARGS arguments */
	NR_EXEC_FILENAME_TRUNCATED = 1 << 2,
	NR_EXEC_FILENAME_FAULT = 1 << 3, /* path not readable at entry */
};

/*
 * One record per exec, sent when the syscall returns. Only the first
 * `argc` rows of argv are sent: the record is cut after them, so userspace
 * must accept records shorter than this struct (never shorter than argv's
 * offset).
 */
struct nr_exec_event {
	__u64 ts_ns;		/* syscall exit, bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 duration_ns;	/* syscall entry to exit */
	__u32 pid;		/* tgid (unchanged by exec) */
	__u32 tid;		/* thread that called exec (it becomes the leader on success) */
	__u32 ppid;		/* real_parent->tgid, read at exit */
	__u32 uid;		/* real uid at entry */
	__s32 ret;		/* 0 or -errno */
	__u32 argc;		/* rows of argv captured, <= NR_EXEC_ARGS */
	__u32 arg_truncated;	/* bit i: argv[i] was cut to NR_EXEC_ARG_LEN - 1 bytes */
	__u32 arg_fault;	/* bit i: argv[i] could not be read (page not present) */
	__u32 flags;		/* enum nr_exec_flags */
	__s32 dirfd;		/* execveat's dirfd (AT_FDCWD for execve) */
	char comm[NR_EXEC_COMM_LEN];	 /* at exit: the new image's name on success */
	char filename[NR_EXEC_FILENAME_LEN]; /* as passed to the syscall */
	char argv[NR_EXEC_ARGS][NR_EXEC_ARG_LEN];
};

/* nr_exec_config.flags: which filters apply */
enum nr_exec_filter {
	NR_EXEC_F_PID = 1 << 0,
	NR_EXEC_F_UID = 1 << 1,
	NR_EXEC_F_COMM = 1 << 2,
	NR_EXEC_F_FAILED = 1 << 3,	/* only execs that returned an error */
};

/* Set by userspace in .rodata before load, so the verifier prunes unused filters. */
struct nr_exec_config {
	__u32 flags;		/* enum nr_exec_filter */
	__u32 pid;		/* tgid of the process calling exec */
	__u32 uid;		/* real uid of the caller */
	__u32 nr_execve;	/* this arch's syscall numbers (raw_syscalls backend) */
	__u32 nr_execveat;
	/* Wake the reader once this many bytes wait in the ring (0: on every
	 * record); below it the reader polls on a timer. A wakeup costs the
	 * exec path tens of µs (IPIs), more than the rest of the tracing. */
	__u32 wakeup_bytes;
	char comm[NR_EXEC_COMM_LEN];	/* compared with the comm reported (at exit) */
};

/* Per-CPU counters (one array entry, summed over CPUs by userspace). */
struct nr_exec_stats {
	__u64 entered;		/* execs seen at entry that passed pid/uid */
	__u64 sent;		/* records written to the ring */
	__u64 lost;		/* ring full: the record (which passed every filter) was dropped */
	__u64 pending_full;	/* could not remember the entry (pending map full) */
};

#endif /* NETRAY_EXEC_ABI_H */
