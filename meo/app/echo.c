/*
 * Minimal RFC 862 UDP echo server: the probe target of mecfed overlays.
 *
 * Usage: echo [port]   (default: $ECHO_PORT, else 7)
 *
 * Built with `gcc -static -O2` so that it runs in a FROM-scratch image and
 * in a bare network namespace without any libraries. SIGTERM/SIGINT make it
 * exit at once (the blocking recvfrom is interrupted because the handler is
 * installed without SA_RESTART), so container stops take milliseconds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    const char *arg = argc > 1 ? argv[1] : getenv("ECHO_PORT");
    long port = arg && *arg ? strtol(arg, NULL, 10) : 7;
    if (port < 1 || port > 65535) {
        fprintf(stderr, "echo: bad port %s\n", arg);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: recvfrom returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* IPv6 socket with V6ONLY off serves IPv4 too; fall back to IPv4. */
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    if (fd >= 0) {
        int off = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((unsigned short)port);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a4;
        memset(&a4, 0, sizeof a4);
        a4.sin_family = AF_INET;
        a4.sin_addr.s_addr = htonl(INADDR_ANY);
        a4.sin_port = htons((unsigned short)port);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
            perror("echo: bind");
            return 1;
        }
    }
    fprintf(stderr, "echo: listening on udp/%ld\n", port);

    char buf[65536];
    while (!stop) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("echo: recvfrom");
            return 1;
        }
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
    }
    close(fd);
    return 0;
}
