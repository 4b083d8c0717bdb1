/*
 * warren's pod sandbox ("pause") process, for the local node's containerd, which
 * needs a sandbox image and can reach no registry.
 *
 * It is PID 1 of every pod: it holds the pod's namespaces, reaps the zombies of
 * processes re-parented to it, and exits 0 on SIGTERM or SIGINT. Linked statically
 * against musl (make images); the image holds this one file.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PAUSE_VERSION
#define PAUSE_VERSION "unknown"
#endif

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) {
  int saved = errno;
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static int handle(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1) {
    if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0) {
      printf("pause %s (warren)\n", PAUSE_VERSION);
      return 0;
    }
    fprintf(stderr, "usage: %s [-v|--version]\n", argv[0]);
    return 2;
  }
  if (getpid() != 1) {
    fprintf(stderr, "pause: warning: not running as PID 1\n");
  }
  if (handle(SIGINT, on_stop, 0) || handle(SIGTERM, on_stop, 0) ||
      handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
    perror("pause: sigaction");
    return 1;
  }
  /* SIGINT and SIGTERM are blocked except inside sigsuspend, so one that arrives
   * between the check and the wait is not lost. */
  sigset_t stops, during_wait;
  sigemptyset(&stops);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &stops, &during_wait)) {
    perror("pause: sigprocmask");
    return 1;
  }
  sigdelset(&during_wait, SIGINT);
  sigdelset(&during_wait, SIGTERM);
  while (!stop_signal) {
    sigsuspend(&during_wait);
  }
  fprintf(stderr, "pause: got signal %d, exiting\n", (int)stop_signal);
  return 0;
}
