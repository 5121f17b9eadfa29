/* Preloaded into profiled peer-agent processes by scripts/profile-round-trip.sh.
 *
 * Swift's async main ends in libdispatch's dispatch_main, which parks the main thread in
 * sigsuspend() on a signal mask in read-only memory; valgrind 3.19 edits that mask in place and
 * dies ("Valgrind received a signal 11"). This sigsuspend hands the kernel a copy instead. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
  sigset_t copy = *mask;
  return (int)syscall(SYS_rt_sigsuspend, &copy, (size_t)(_NSIG / 8));
}
