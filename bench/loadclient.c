/*
 * The load C{make bench} needs and the request/reply load generator does not make: one-way
 * streams, and pipelined requests over TLS.  One thread a connection, blocking sockets: each
 * thread only copies a prepared buffer out and counts newlines in, so on a core of its own this
 * client outruns any of the servers it measures.
 *
 *   loadclient --port P --conns N --depth D --duration S --warmup S --msg-file F [--expect STR] [--tls]
 *       pipelined: every connection sends D requests in one write, reads the D replies, and
 *       again; prints {"rps":..., "replies":..., "errors":..., "seconds":..., "client_cpu":...}
 *   loadclient --port P --conns N --stream COUNT --msg-file F --final-file G [--expect STR] [--tls]
 *       a one-way stream: every connection sends COUNT messages of F (a warm-up of COUNT/10
 *       first), then the request G, and waits for its one reply, which comes only once the
 *       server has handled every message before it (replies are in order, and so is handling);
 *       prints {"messages_per_s":..., "messages":..., "errors":..., "seconds":..., "client_cpu":...}
 *       (client_cpu: this process's CPU over the measured time, in per cent of one core)
 *
 * A reply without STR counts as an error.  Only loopback addresses are accepted.
 * Build: gcc -O2 -o loadclient loadclient.c -lssl -lcrypto -lpthread
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct {
    const char *host;
    int port, conns, depth, tls;
    double duration, warmup;
    long stream;
    const char *msgFile, *finalFile, *expect;
} opt = {"127.0.0.1", 0, 50, 64, 0, 4, 1, 0, NULL, NULL, "\"OK\""};

static char *message, *finalRequest;
static size_t messageLength, finalLength;
static SSL_CTX *context;
static atomic_long replies, errors;
static atomic_int stopping;
static pthread_barrier_t started, warmedUp;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* This process's CPU time, user and system, in seconds: to show the client is not the bottleneck. */
static double cpuSeconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "loadclient: %s\n", what);
    exit(2);
}

static char *readFile(const char *path, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot read a message file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *data = malloc(size + 2);
    if (fread(data, 1, size, f) != (size_t)size) die("cannot read a message file");
    fclose(f);
    while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r')) size--;
    if (memchr(data, '\n', size)) die("a message file holds more than one line");
    data[size++] = '\n';
    *length = size;
    return data;
}

/* One connection: a socket, and its TLS session when --tls. */
typedef struct {
    int fd;
    SSL *ssl;
    char tail[65536]; /* the unfinished reply line, for the --expect check */
    size_t tailLength;
} Connection;

static int connectTo(Connection *c) {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    inet_pton(AF_INET, opt.host, &address.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->tailLength = 0;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A server that stops answering ends the run with an error, not a hang. */
    struct timeval limit = {.tv_sec = 15};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(c->fd, (struct sockaddr *)&address, sizeof address) != 0) return -1;
    c->ssl = NULL;
    if (opt.tls) {
        c->ssl = SSL_new(context);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_connect(c->ssl) != 1) return -1;
    }
    return 0;
}

static int sendAll(Connection *c, const char *data, size_t length) {
    while (length > 0) {
        ssize_t n = c->ssl ? SSL_write(c->ssl, data, (int)length) : send(c->fd, data, length, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        data += n;
        length -= n;
    }
    return 0;
}

/* Read until `count` more reply lines have come; each without --expect is an error. */
static int readReplies(Connection *c, long count) {
    char buffer[262144];
    while (count > 0) {
        ssize_t n = c->ssl ? SSL_read(c->ssl, buffer, sizeof buffer) : recv(c->fd, buffer, sizeof buffer, 0);
        if (n <= 0) return -1;
        char *start = buffer, *end = buffer + n, *newline;
        while ((newline = memchr(start, '\n', end - start)) != NULL) {
            size_t length = newline - start;
            int found;
            if (c->tailLength) {
                size_t room = sizeof c->tail - c->tailLength;
                size_t take = length < room ? length : room;
                memcpy(c->tail + c->tailLength, start, take);
                found = memmem(c->tail, c->tailLength + take, opt.expect, strlen(opt.expect)) != NULL;
                c->tailLength = 0;
            } else {
                found = memmem(start, length, opt.expect, strlen(opt.expect)) != NULL;
            }
            if (!found) atomic_fetch_add(&errors, 1);
            count--;
            atomic_fetch_add_explicit(&replies, 1, memory_order_relaxed);
            start = newline + 1;
        }
        size_t rest = end - start, room = sizeof c->tail - c->tailLength;
        memcpy(c->tail + c->tailLength, start, rest < room ? rest : room);
        c->tailLength += rest < room ? rest : room;
    }
    return 0;
}

static void closeConnection(Connection *c) {
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    close(c->fd);
}

static void *pipelined(void *unused) {
    (void)unused;
    Connection *c = calloc(1, sizeof *c);
    size_t batchLength = messageLength * opt.depth;
    char *batch = malloc(batchLength);
    for (int i = 0; i < opt.depth; i++) memcpy(batch + i * messageLength, message, messageLength);
    int failed = connectTo(c);
    pthread_barrier_wait(&started);
    while (!failed && !atomic_load_explicit(&stopping, memory_order_relaxed)) {
        if (sendAll(c, batch, batchLength) || readReplies(c, opt.depth)) failed = 1;
    }
    if (failed) atomic_fetch_add(&errors, 1);
    closeConnection(c);
    free(batch);
    free(c);
    return NULL;
}

/* Send `count` messages then the final request; wait for its reply. */
static int streamOnce(Connection *c, const char *chunk, size_t perChunk, long count) {
    while (count > 0) {
        long n = count < (long)perChunk ? count : (long)perChunk;
        if (sendAll(c, chunk, n * messageLength)) return -1;
        count -= n;
    }
    if (sendAll(c, finalRequest, finalLength)) return -1;
    return readReplies(c, 1);
}

static void *streaming(void *unused) {
    (void)unused;
    Connection *c = calloc(1, sizeof *c);
    size_t perChunk = 65536 / messageLength + 1;
    char *chunk = malloc(perChunk * messageLength);
    for (size_t i = 0; i < perChunk; i++) memcpy(chunk + i * messageLength, message, messageLength);
    int failed = connectTo(c);
    pthread_barrier_wait(&started);
    if (!failed) failed = streamOnce(c, chunk, perChunk, opt.stream / 10 + 1);
    pthread_barrier_wait(&warmedUp);
    if (!failed) failed = streamOnce(c, chunk, perChunk, opt.stream);
    if (failed) atomic_fetch_add(&errors, 1);
    closeConnection(c);
    free(chunk);
    free(c);
    return NULL;
}

static void usage(void) {
    fputs("usage: loadclient --port P [--host 127.0.0.1] [--conns N] [--tls] --msg-file F [--expect STR]\n"
          "         (--depth D --duration S --warmup S | --stream COUNT --final-file G)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    static struct option options[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},    {"depth", required_argument, 0, 'd'},
        {"duration", required_argument, 0, 'D'}, {"warmup", required_argument, 0, 'w'},
        {"stream", required_argument, 0, 's'},   {"msg-file", required_argument, 0, 'm'},
        {"final-file", required_argument, 0, 'f'}, {"expect", required_argument, 0, 'e'},
        {"tls", no_argument, 0, 't'},            {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (o) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'c': opt.conns = atoi(optarg); break;
        case 'd': opt.depth = atoi(optarg); break;
        case 'D': opt.duration = atof(optarg); break;
        case 'w': opt.warmup = atof(optarg); break;
        case 's': opt.stream = atol(optarg); break;
        case 'm': opt.msgFile = optarg; break;
        case 'f': opt.finalFile = optarg; break;
        case 'e': opt.expect = optarg; break;
        case 't': opt.tls = 1; break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.depth <= 0 || opt.duration <= 0 || !opt.msgFile) usage();
    if (opt.stream && !opt.finalFile) usage();
    if (strncmp(opt.host, "127.", 4) != 0) die("only loopback addresses (127.x.x.x) are accepted");
    message = readFile(opt.msgFile, &messageLength);
    if (opt.finalFile) finalRequest = readFile(opt.finalFile, &finalLength);
    if (opt.tls) {
        /* The server's certificate is not checked: the measure is of the traffic, on loopback. */
        context = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(context, SSL_VERIFY_NONE, NULL);
    }
    pthread_barrier_init(&started, NULL, opt.conns + 1);
    pthread_barrier_init(&warmedUp, NULL, opt.conns + 1);
    pthread_t *threads = malloc(sizeof *threads * opt.conns);
    for (int i = 0; i < opt.conns; i++) pthread_create(&threads[i], NULL, opt.stream ? streaming : pipelined, NULL);
    pthread_barrier_wait(&started);
    if (opt.stream) {
        pthread_barrier_wait(&warmedUp);
        double start = now(), cpu = cpuSeconds();
        for (int i = 0; i < opt.conns; i++) pthread_join(threads[i], NULL);
        double seconds = now() - start;
        long messages = opt.stream * opt.conns;
        printf("{\"messages_per_s\":%.0f,\"messages\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"client_cpu\":%.0f}\n",
               messages / seconds, messages, atomic_load(&errors), seconds, 100 * (cpuSeconds() - cpu) / seconds);
        return 0;
    }
    usleep((useconds_t)(opt.warmup * 1e6));
    long before = atomic_load(&replies);
    double start = now(), cpu = cpuSeconds();
    usleep((useconds_t)(opt.duration * 1e6));
    long counted = atomic_load(&replies) - before;
    double seconds = now() - start;
    cpu = cpuSeconds() - cpu;
    atomic_store(&stopping, 1);
    for (int i = 0; i < opt.conns; i++) pthread_join(threads[i], NULL);
    printf("{\"rps\":%.0f,\"replies\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"client_cpu\":%.0f}\n", counted / seconds,
           counted, atomic_load(&errors), seconds, 100 * cpu / seconds);
    return 0;
}
