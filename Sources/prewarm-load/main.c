// prewarm-load: the benchmarks' open-loop HTTP load generator and a delaying TCP proxy.
//
//   prewarm-load http --port P --path '/v1/users/{u}/store-recommendations' --users 100000
//                     --rate 6500 --seconds 15 [--warmup 3] [--connections 64] [--seed 1] [--host IPv4]
//   prewarm-load delay-proxy --listen P --target-port Q [--delay-us 500] [--host 127.0.0.1]
//
// `http` sends request i at start + i / rate whatever the server does (an open loop: a slow
// answer does not slow the next send), each on a free keep-alive connection, or as soon as one
// frees if none is, and measures every answer's latency from the request's *intended* send
// time, so a stall shows in the figures as the queue it made (no coordinated omission). `{u}`
// in the path is a user id drawn uniformly from 1 ... users per request. It prints one line of
// key=value figures, its own CPU seconds among them (it shares the machine with the server).
//
// `delay-proxy` forwards every byte between a client and the target after a fixed delay each
// way (500 us each way: 1 ms more per round trip, as a Redis in another rack would add), in
// order, without ever blocking one direction on the other.
//
// One thread, epoll, no allocation per request; Linux only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "prewarm-load: %s\n", what);
    exit(2);
}

static void die_errno(const char *what) {
    fprintf(stderr, "prewarm-load: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Arms the timer to fire at the monotonic time `at` (ns); 0 disarms it.
static void arm(int timer, int64_t at) {
    struct itimerspec spec = {0};
    if (at > 0) {
        spec.it_value.tv_sec = at / 1000000000;
        spec.it_value.tv_nsec = at % 1000000000;
        if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    }
    if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &spec, NULL) != 0) die_errno("timerfd_settime");
}

static void nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) die_errno("fcntl");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int connect_to(const char *host, int port) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) die("--host must be an IPv4 address");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die_errno("socket");
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    nonblocking(fd);
    return fd;
}

static void watch(int epoll, int fd, uint32_t events, uint64_t tag, int op) {
    struct epoll_event event = {.events = events, .data.u64 = tag};
    if (epoll_ctl(epoll, op, fd, &event) != 0) die_errno("epoll_ctl");
}

static long number(const char *flag, const char *value, long low, long high) {
    char *end = NULL;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || parsed < low || parsed > high) {
        fprintf(stderr, "prewarm-load: %s must be a whole number from %ld to %ld, not '%s'\n", flag, low, high,
                value);
        exit(2);
    }
    return parsed;
}

// MARK: - http

typedef struct {
    int fd;
    int busy;
    int64_t intended;  // the request's intended send time
    int measured;      // intended after the warm-up
    char in[65536];
    size_t have;
} Connection;

static uint64_t rng_state;

static uint64_t next_random(void) {  // xorshift64*
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

// The length of one whole response at the start of `buffer`, 0 when it is not all there yet,
// -1 when it is not HTTP. Sets *ok to whether its status is 2xx.
static long response_length(const char *buffer, size_t have, int *ok) {
    const char *end = memmem(buffer, have, "\r\n\r\n", 4);
    if (end == NULL) return have > 16384 ? -1 : 0;
    if (have < 12 || memcmp(buffer, "HTTP/1.", 7) != 0) return -1;
    *ok = buffer[9] == '2';
    size_t header = (size_t)(end - buffer) + 4;
    long body = -1;
    int chunked = 0;
    for (const char *line = buffer; line < end;) {
        const char *next = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (next == NULL) next = end;
        if ((size_t)(next - line) > 15 && strncasecmp(line, "content-length:", 15) == 0) {
            body = strtol(line + 15, NULL, 10);
        } else if ((size_t)(next - line) > 18 && strncasecmp(line, "transfer-encoding:", 18) == 0) {
            chunked = memmem(line, (size_t)(next - line), "chunked", 7) != NULL;
        }
        line = next + 2;
    }
    if (chunked) {
        const char *last = memmem(buffer + header, have - header, "0\r\n\r\n", 5);
        return last == NULL ? 0 : (long)(last + 5 - buffer);
    }
    if (body < 0) body = 0;
    return header + (size_t)body <= have ? (long)(header + (size_t)body) : 0;
}

static int run_http(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = NULL;
    long port = 0, users = 1, rate = 0, seconds = 10, warmup = 2, connections = 64, seed = 1;
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) die("every option takes a value");
        const char *flag = argv[i], *value = argv[i + 1];
        if (strcmp(flag, "--host") == 0) host = value;
        else if (strcmp(flag, "--port") == 0) port = number(flag, value, 1, 65535);
        else if (strcmp(flag, "--path") == 0) path = value;
        else if (strcmp(flag, "--users") == 0) users = number(flag, value, 1, 1000000000);
        else if (strcmp(flag, "--rate") == 0) rate = number(flag, value, 1, 10000000);
        else if (strcmp(flag, "--seconds") == 0) seconds = number(flag, value, 1, 3600);
        else if (strcmp(flag, "--warmup") == 0) warmup = number(flag, value, 0, 3600);
        else if (strcmp(flag, "--connections") == 0) connections = number(flag, value, 1, 10000);
        else if (strcmp(flag, "--seed") == 0) seed = number(flag, value, 1, 1000000000);
        else {
            fprintf(stderr, "prewarm-load: unknown option '%s'\n", flag);
            return 2;
        }
    }
    if (port == 0 || path == NULL || rate == 0) die("http needs --port, --path and --rate");
    const char *slot = strstr(path, "{u}");
    signal(SIGPIPE, SIG_IGN);  // a write to a connection the server closed fails, and is counted
    rng_state = (uint64_t)seed * 0x9E3779B97F4A7C15ULL;

    int epoll = epoll_create1(0), timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (epoll < 0 || timer < 0) die_errno("epoll or timerfd");
    watch(epoll, timer, EPOLLIN, UINT64_MAX, EPOLL_CTL_ADD);
    Connection *pool = calloc((size_t)connections, sizeof *pool);
    int *idle = calloc((size_t)connections, sizeof *idle);
    if (pool == NULL || idle == NULL) die("out of memory");
    int idle_count = 0;
    for (long c = 0; c < connections; c++) {
        pool[c].fd = connect_to(host, (int)port);
        if (pool[c].fd < 0) die_errno("connect");
        watch(epoll, pool[c].fd, EPOLLIN | EPOLLRDHUP, (uint64_t)c, EPOLL_CTL_ADD);
        idle[idle_count++] = (int)c;
    }
    // Intended send times of requests that found every connection busy, oldest first.
    size_t total = (size_t)rate * (size_t)(seconds + warmup) + 16;
    int64_t *backlog = malloc(total * sizeof *backlog);
    uint32_t *latencies = malloc(total * sizeof *latencies);
    if (backlog == NULL || latencies == NULL) die("out of memory");
    size_t backlog_head = 0, backlog_tail = 0, measured = 0, max_backlog = 0;
    long sent = 0, completed = 0, errors = 0, reconnects = 0, delayed = 0;

    struct rusage usage0;
    getrusage(RUSAGE_SELF, &usage0);
    const int64_t interval = 1000000000 / rate, start = now_ns() + 1000000;
    const int64_t measure_from = start + warmup * 1000000000LL;
    const int64_t stop = measure_from + seconds * 1000000000LL, drain_until = stop + 2000000000LL;
    const long planned = (long)((stop - start) / interval);
    long next = 0;  // the next request to schedule
    int64_t armed = -1;
    char request[4096];

    // Sends a request intended at `intended` on connection `c`.
#define SEND(c, when)                                                                                          \
    do {                                                                                                       \
        int length;                                                                                            \
        if (slot != NULL) {                                                                                    \
            unsigned long long user = 1 + next_random() % (uint64_t)users;                                    \
            length = snprintf(request, sizeof request, "GET %.*s%llu%s HTTP/1.1\r\nHost: %s\r\n\r\n",        \
                              (int)(slot - path), path, user, slot + 3, host);                                 \
        } else {                                                                                               \
            length = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);   \
        }                                                                                                      \
        pool[c].busy = 1;                                                                                      \
        pool[c].intended = (when);                                                                             \
        pool[c].measured = (when) >= measure_from;                                                             \
        pool[c].have = 0;                                                                                      \
        if (write(pool[c].fd, request, (size_t)length) != length) { /* loopback: a small write goes whole */ \
            errors++;                                                                                          \
            pool[c].busy = 0;                                                                                  \
        } else {                                                                                               \
            sent++;                                                                                            \
        }                                                                                                      \
    } while (0)

    struct epoll_event events[256];
    for (;;) {
        int64_t now = now_ns();
        // Every request due by now: on an idle connection, else into the backlog.
        while (next < planned && start + next * interval <= now) {
            int64_t when = start + next * interval;
            next++;
            if (idle_count > 0) {
                int c = idle[--idle_count];
                SEND(c, when);
                if (!pool[c].busy) idle[idle_count++] = c;
            } else {
                backlog[backlog_tail++] = when;
                delayed++;
                if (backlog_tail - backlog_head > max_backlog) max_backlog = backlog_tail - backlog_head;
            }
        }
        int in_flight = (int)connections - idle_count;
        if (next >= planned && backlog_head == backlog_tail && (in_flight == 0 || now >= drain_until)) break;
        if (now >= drain_until) break;
        int64_t wake = next < planned ? start + next * interval : drain_until;
        if (wake != armed) {  // one timerfd_settime per due time, not per wake-up
            arm(timer, wake);
            armed = wake;
        }
        int ready = epoll_wait(epoll, events, 256, -1);
        if (ready < 0 && errno != EINTR) die_errno("epoll_wait");
        for (int e = 0; e < ready; e++) {
            if (events[e].data.u64 == UINT64_MAX) {
                uint64_t expirations;
                (void)!read(timer, &expirations, sizeof expirations);
                continue;
            }
            int c = (int)events[e].data.u64;
            Connection *connection = &pool[c];
            int closed = 0;
            for (;;) {
                ssize_t got = read(connection->fd, connection->in + connection->have,
                                   sizeof connection->in - connection->have);
                if (got > 0) {
                    connection->have += (size_t)got;
                    // A short read took all there was: the next readiness brings the rest
                    // (or the close), so no second read to hear EAGAIN.
                    if (connection->have == sizeof connection->in || (size_t)got < sizeof connection->in / 2) break;
                    continue;
                }
                if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = 1;
                break;
            }
            int ok = 0;
            long length = connection->busy ? response_length(connection->in, connection->have, &ok) : -1;
            if (length > 0) {
                int64_t done = now_ns();
                completed++;
                if (!ok) errors++;
                if (connection->measured) {
                    int64_t micros = (done - connection->intended) / 1000;
                    latencies[measured++] = micros > UINT32_MAX ? UINT32_MAX : (uint32_t)micros;
                }
                connection->busy = 0;
                connection->have = 0;
            } else if (length < 0 || closed) {
                if (connection->busy) errors++;
                connection->busy = 0;
                closed = 1;
            }
            if (closed) {  // a new connection in its place
                close(connection->fd);
                connection->fd = connect_to(host, (int)port);
                if (connection->fd < 0) die_errno("reconnect");
                watch(epoll, connection->fd, EPOLLIN | EPOLLRDHUP, (uint64_t)c, EPOLL_CTL_ADD);
                reconnects++;
            }
            if (!connection->busy) {
                if (backlog_head < backlog_tail) {
                    int64_t when = backlog[backlog_head++];
                    SEND(c, when);
                }
                if (!connection->busy) idle[idle_count++] = c;
            }
        }
    }
    struct rusage usage1;
    getrusage(RUSAGE_SELF, &usage1);
    double cpu = (double)(usage1.ru_utime.tv_sec - usage0.ru_utime.tv_sec + usage1.ru_stime.tv_sec -
                          usage0.ru_stime.tv_sec) +
                 (double)(usage1.ru_utime.tv_usec - usage0.ru_utime.tv_usec + usage1.ru_stime.tv_usec -
                          usage0.ru_stime.tv_usec) /
                     1e6;
    qsort(latencies, measured, sizeof *latencies, compare_u32);
#define PCT(p) (measured == 0 ? 0.0 : latencies[(size_t)((double)(measured - 1) * (p))] / 1000.0)
    long unanswered = sent - completed;
    printf("offered=%ld sent=%ld completed=%ld measured=%zu achieved=%.0f errors=%ld unanswered=%ld reconnects=%ld "
           "queued=%ld max_queue=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f cpu_s=%.3f "
           "cpu_us_per_request=%.2f\n",
           rate, sent, completed, measured, (double)measured / (double)seconds, errors, unanswered, reconnects, delayed,
           max_backlog, PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999), PCT(1.0), cpu,
           sent == 0 ? 0.0 : cpu * 1e6 / (double)sent);
    return errors > 0 || unanswered > 0 ? 1 : 0;
}

// MARK: - delay-proxy

typedef struct Chunk {
    struct Chunk *next;      // in the global order of arrival (= order of release: one delay)
    int64_t due;
    int pair, to_target;     // the pair and direction it goes
    size_t length;
    char bytes[];
} Chunk;

typedef struct {
    int fd[2];       // 0: the client's side, 1: the target's side
    char *out[2];    // bytes due for fd[i] that it has not taken yet
    size_t out_length[2], out_capacity[2];
    int open;
} Pair;

static Pair *pairs;
static int pair_count, pair_capacity;

static void out_append(int epoll, int p, int side, const char *bytes, size_t length) {
    Pair *pair = &pairs[p];
    if (pair->out_length[side] == 0) {  // try at once
        ssize_t wrote = write(pair->fd[side], bytes, length);
        if (wrote > 0) {
            bytes += wrote;
            length -= (size_t)wrote;
        }
        if (length == 0) return;
    }
    if (pair->out_length[side] + length > pair->out_capacity[side]) {
        size_t capacity = (pair->out_length[side] + length) * 2;
        pair->out[side] = realloc(pair->out[side], capacity);
        if (pair->out[side] == NULL) die("out of memory");
        pair->out_capacity[side] = capacity;
    }
    memcpy(pair->out[side] + pair->out_length[side], bytes, length);
    pair->out_length[side] += length;
    watch(epoll, pair->fd[side], EPOLLIN | EPOLLOUT, ((uint64_t)p << 1) | (uint64_t)side, EPOLL_CTL_MOD);
}

static void close_pair(int epoll, int p) {
    Pair *pair = &pairs[p];
    if (!pair->open) return;
    for (int side = 0; side < 2; side++) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, pair->fd[side], NULL);
        close(pair->fd[side]);
        free(pair->out[side]);
        pair->out[side] = NULL;
        pair->out_length[side] = pair->out_capacity[side] = 0;
    }
    pair->open = 0;
}

static int run_proxy(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long listen_port = 0, target_port = 0, delay_us = 500;
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) die("every option takes a value");
        const char *flag = argv[i], *value = argv[i + 1];
        if (strcmp(flag, "--host") == 0) host = value;
        else if (strcmp(flag, "--listen") == 0) listen_port = number(flag, value, 1, 65535);
        else if (strcmp(flag, "--target-port") == 0) target_port = number(flag, value, 1, 65535);
        else if (strcmp(flag, "--delay-us") == 0) delay_us = number(flag, value, 0, 10000000);
        else {
            fprintf(stderr, "prewarm-load: unknown option '%s'\n", flag);
            return 2;
        }
    }
    if (listen_port == 0 || target_port == 0) die("delay-proxy needs --listen and --target-port");
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 512) != 0)
        die_errno("listen");
    int epoll = epoll_create1(0), timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    watch(epoll, listener, EPOLLIN, UINT64_MAX - 1, EPOLL_CTL_ADD);
    watch(epoll, timer, EPOLLIN, UINT64_MAX, EPOLL_CTL_ADD);
    Chunk *head = NULL, *tail = NULL;
    const int64_t delay = delay_us * 1000;
    char buffer[65536];
    fprintf(stderr, "prewarm-load: delay-proxy on 127.0.0.1:%ld to %s:%ld, %ld us each way\n", listen_port, host,
            target_port, delay_us);
    struct epoll_event events[256];
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        if (ready < 0 && errno != EINTR) die_errno("epoll_wait");
        for (int e = 0; e < ready; e++) {
            uint64_t tag = events[e].data.u64;
            if (tag == UINT64_MAX - 1) {
                int client = accept(listener, NULL, NULL);
                if (client < 0) continue;
                int target = connect_to(host, (int)target_port);
                if (target < 0) {
                    close(client);
                    continue;
                }
                nonblocking(client);
                if (pair_count == pair_capacity) {
                    pair_capacity = pair_capacity == 0 ? 64 : pair_capacity * 2;
                    pairs = realloc(pairs, (size_t)pair_capacity * sizeof *pairs);
                    if (pairs == NULL) die("out of memory");
                }
                int p = pair_count++;
                pairs[p] = (Pair){.fd = {client, target}, .open = 1};
                watch(epoll, client, EPOLLIN, (uint64_t)p << 1, EPOLL_CTL_ADD);
                watch(epoll, target, EPOLLIN, ((uint64_t)p << 1) | 1, EPOLL_CTL_ADD);
                continue;
            }
            if (tag != UINT64_MAX) {
                int p = (int)(tag >> 1), side = (int)(tag & 1);
                Pair *pair = &pairs[p];
                if (!pair->open) continue;
                if ((events[e].events & EPOLLOUT) && pair->out_length[side] > 0) {
                    ssize_t wrote = write(pair->fd[side], pair->out[side], pair->out_length[side]);
                    if (wrote > 0) {
                        memmove(pair->out[side], pair->out[side] + wrote, pair->out_length[side] - (size_t)wrote);
                        pair->out_length[side] -= (size_t)wrote;
                    }
                    if (pair->out_length[side] == 0)
                        watch(epoll, pair->fd[side], EPOLLIN, tag, EPOLL_CTL_MOD);
                }
                if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    ssize_t got = read(pair->fd[side], buffer, sizeof buffer);
                    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                        close_pair(epoll, p);
                        continue;
                    }
                    if (got > 0) {
                        Chunk *chunk = malloc(sizeof *chunk + (size_t)got);
                        if (chunk == NULL) die("out of memory");
                        *chunk = (Chunk){.due = now_ns() + delay, .pair = p, .to_target = side == 0,
                                         .length = (size_t)got};
                        memcpy(chunk->bytes, buffer, (size_t)got);
                        if (tail) tail->next = chunk; else head = chunk;
                        tail = chunk;
                    }
                }
            } else {
                uint64_t expirations;
                (void)!read(timer, &expirations, sizeof expirations);
            }
        }
        int64_t now = now_ns();
        while (head != NULL && head->due <= now) {
            Chunk *chunk = head;
            head = chunk->next;
            if (head == NULL) tail = NULL;
            if (pairs[chunk->pair].open)
                out_append(epoll, chunk->pair, chunk->to_target ? 1 : 0, chunk->bytes, chunk->length);
            free(chunk);
        }
        arm(timer, head != NULL ? head->due : 0);
    }
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "http") == 0) return run_http(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "delay-proxy") == 0) return run_proxy(argc, argv);
    fprintf(stderr,
            "usage: prewarm-load http --port P --path PATH --rate R [--users N] [--seconds S] [--warmup S]\n"
            "                         [--connections C] [--seed N] [--host IPv4]\n"
            "       prewarm-load delay-proxy --listen P --target-port Q [--delay-us U] [--host IPv4]\n");
    return 2;
}
