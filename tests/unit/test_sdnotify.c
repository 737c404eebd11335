/* test_sdnotify.c - the service-manager protocol: the built-in datagram sender
 * (used when built without libsystemd) against a real AF_UNIX socket, path and
 * abstract; sdnotify_send through $NOTIFY_SOCKET; and the progress slots that
 * decide whether WATCHDOG=1 is sent. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/sdnotify.h"
#include "tests/tap.h"

static int listener(const char *path, bool abstract) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        memcpy(sa.sun_path, path, n);
        if (abstract)
                sa.sun_path[0] = '\0';
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
                return -1;
        return fd;
}

static bool receive(int fd, const char *want) {
        char buf[2048];
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
                return false;
        buf[n] = '\0';
        if (strcmp(buf, want) != 0)
                diag("got '%s'", buf);
        return strcmp(buf, want) == 0;
}

int main(void) {
        char dir[] = "/tmp/finetuned-test-notify.XXXXXX", path[256];
        if (!mkdtemp(dir))
                return 1;
        snprintf(path, sizeof(path), "%s/notify.sock", dir);

        int fd = listener(path, false);
        ok(fd >= 0, "a datagram socket listens at %s", path);
        ok(sdnotify_send_to(path, "READY=1\nSTATUS=hello\n") == 0, "built-in sender: sent to a path");
        ok(receive(fd, "READY=1\nSTATUS=hello\n"), "the listener got exactly the message");

        char abstract[64];
        snprintf(abstract, sizeof(abstract), "@finetuned-test-%d", (int)getpid());
        int afd = listener(abstract, true);
        ok(afd >= 0 && sdnotify_send_to(abstract, "WATCHDOG=1\n") == 0 && receive(afd, "WATCHDOG=1\n"),
           "built-in sender: abstract socket %s", abstract);
        close(afd);
        ok(sdnotify_send_to("/nonexistent/dir/sock", "READY=1\n") == -ENOENT, "a missing socket is -ENOENT");

        /* Through the environment (libsystemd's sd_notify when built with it). */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        sdnotify_init();
        ok(sdnotify_send("READY=1\n") == 0, "without NOTIFY_SOCKET sending is a no-op");
        is_int(sdnotify_watchdog_usec(), 0, "no watchdog without WATCHDOG_USEC");
        is_int(sdnotify_tick_interval_ms(), 1000, "tick every second without a watchdog");

        setenv("NOTIFY_SOCKET", path, 1);
        setenv("WATCHDOG_USEC", "300000", 1);
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        setenv("WATCHDOG_PID", pid, 1);
        sdnotify_init();
        is_int(sdnotify_watchdog_usec(), 300000, "WATCHDOG_USEC read");
        is_int(sdnotify_tick_interval_ms(), 100, "tick at a third of the watchdog interval");
        ok(sdnotify_ready("listening on http://127.0.0.1:1") == 0 &&
                   receive(fd, "READY=1\nSTATUS=listening on http://127.0.0.1:1\n"),
           "sdnotify_ready: READY=1 with STATUS=");
        ok(sdnotify_stopping("multi\nline") == 0 && receive(fd, "STOPPING=1\nSTATUS=multi line\n"),
           "sdnotify_stopping: a status stays on one line");
        ok(sdnotify_reloading() == 0 && receive(fd, "RELOADING=1\n"), "sdnotify_reloading");

        setenv("WATCHDOG_PID", "1", 1);
        sdnotify_init();
        is_int(sdnotify_watchdog_usec(), 0, "a WATCHDOG_PID of another process disables the watchdog");
        setenv("WATCHDOG_PID", pid, 1);
        sdnotify_init();

        /* Progress gating. */
        double now = ft_now_monotonic();
        char stuck[32] = "";
        ok(sdnotify_progress_ok(now, 1.0, stuck, sizeof(stuck)), "fresh slots are ok");
        int w = sdnotify_progress_add("worker 1");
        ok(w >= 0, "a worker takes a slot");
        ok(sdnotify_progress_ok(now + 0.5, 1.0, stuck, sizeof(stuck)), "0.5 s after the last beat is ok");
        ok(!sdnotify_progress_ok(now + 2.0, 1.0, stuck, sizeof(stuck)), "2 s without a beat is not ok");
        is_str(stuck, "main loop", "the oldest stuck slot is named");

        /* The main loop's tick beats its own slot and feeds the watchdog only
         * while the worker beats too. */
        usleep(350 * 1000);
        sdnotify_progress_beat(w);
        sdnotify_tick(NULL);
        ok(receive(fd, "STATUS=listening on http://127.0.0.1:1; 0 running\n"), "tick: STATUS= with the job counts");
        ok(receive(fd, "WATCHDOG=1\n"), "tick: WATCHDOG=1 while every slot beats");
        usleep(350 * 1000); /* the worker is now older than WATCHDOG_USEC */
        sdnotify_tick(NULL);
        struct timeval tv = {.tv_usec = 200 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        ok(n < 0, "tick: no WATCHDOG=1 while a worker is stuck (%zd bytes arrived)", n);
        sdnotify_progress_beat(w);
        sdnotify_tick(NULL);
        ok(receive(fd, "WATCHDOG=1\n"), "tick: WATCHDOG=1 again once the worker beats");
        sdnotify_progress_remove(w);
        usleep(350 * 1000);
        sdnotify_tick(NULL);
        ok(receive(fd, "WATCHDOG=1\n"), "a removed slot no longer holds the watchdog back");

        int taken = 0;
        while (sdnotify_progress_add("filler") >= 0)
                taken++;
        ok(taken < NOTIFY_PROGRESS_SLOTS && sdnotify_progress_add("x") == -ENOSPC, "slots are bounded (%d taken)", taken);

        close(fd);
        unlink(path);
        rmdir(dir);
        return tap_done();
}
