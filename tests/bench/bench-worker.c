/*
 * bench-worker: the smallest worker a benchmark can supervise.  It blocks
 * SIGTERM and SIGINT, waits for one of them and exits 0; SIGKILL ends it
 * as it ends anything.  It reads nothing, writes nothing and allocates
 * nothing.
 *
 * On x86-64 and AArch64 the build makes it a static executable without
 * libc (BENCH_WORKER_BARE): three system calls from _start.  Even a static
 * glibc spends its start-up probing the CPU with CPUID (init_cpu_features,
 * init_cacheinfo), and in a virtual machine every CPUID is a trap to the
 * hypervisor: under Firecracker that was a third of the worker's CPU time
 * during a spawn storm.  What supervisor-bench compares is the
 * supervisor's overhead over a bare fork+exec, which a heavier worker
 * would only hide.  Elsewhere the same three calls go through libc.
 */
#include <signal.h>

/* The kernel's sigset_t is one 64-bit word on these architectures. */
#define KSIGSET    8
#define KSIG_BLOCK 0 /* rt_sigprocmask's "how", as in <asm/signal.h> */
#define MASK_OF(s) (1ul << ((s)-1))

#if defined(BENCH_WORKER_BARE) && defined(__x86_64__)
#define NR_RT_SIGPROCMASK  14
#define NR_RT_SIGTIMEDWAIT 128
#define NR_EXIT_GROUP      231

static long
sys4(long nr, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long          r;

	__asm__ volatile("syscall"
	                 : "=a"(r)
	                 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
	                 : "rcx", "r11", "memory");
	return r;
}

/* The entry point: align the stack as for a call, and never return. */
__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "	xor %ebp, %ebp\n"
        "	and $-16, %rsp\n"
        "	call bench_worker_main\n"
        "	hlt\n");
#elif defined(BENCH_WORKER_BARE) && defined(__aarch64__)
#define NR_RT_SIGPROCMASK  135
#define NR_RT_SIGTIMEDWAIT 137
#define NR_EXIT_GROUP      94

static long
sys4(long nr, long a, long b, long c, long d)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;

	__asm__ volatile("svc #0"
	                 : "+r"(x0)
	                 : "r"(x8), "r"(x1), "r"(x2), "r"(x3)
	                 : "memory");
	return x0;
}

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "	mov x29, #0\n"
        "	mov x30, #0\n"
        "	bl bench_worker_main\n"
        "	brk #0\n");
#elif defined(BENCH_WORKER_BARE)
#error "BENCH_WORKER_BARE: x86-64 and AArch64 only"
#endif

#ifdef BENCH_WORKER_BARE
#define EINTR_ 4

_Noreturn void bench_worker_main(void);

_Noreturn void
bench_worker_main(void)
{
	unsigned long set = MASK_OF(SIGTERM) | MASK_OF(SIGINT);
	long          r;

	if (sys4(NR_RT_SIGPROCMASK, KSIG_BLOCK, (long)&set, 0, KSIGSET) < 0)
		sys4(NR_EXIT_GROUP, 1, 0, 0, 0);
	do /* -EINTR: SIGSTOP, SIGCONT */
		r = sys4(NR_RT_SIGTIMEDWAIT, (long)&set, 0, 0, KSIGSET);
	while (r == -EINTR_);
	for (;;)
		sys4(NR_EXIT_GROUP, 0, 0, 0, 0);
}
#else
int
main(void)
{
	sigset_t  set;
	siginfo_t si;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		return 1;
	while (sigwaitinfo(&set, &si) == -1) /* EINTR: SIGSTOP, SIGCONT */
		;
	return 0;
}
#endif
