/*
 * sink: the least work a durable HTTP upload can cost on this machine, as a yardstick for the benchmark.
 *
 * Usage: sink DIR
 *
 * Listens on an ephemeral loopback port, prints "listening 127.0.0.1:PORT" on stdout, then serves one
 * connection at a time: it reads the request head, answers "Expect: 100-continue", reads Content-Length
 * body bytes into a 256 KiB buffer and writes each read straight to DIR/.sink-NAME, then does what Ferry
 * does before answering: fsync the file, rename it to DIR/NAME, fsync DIR. Only then it answers
 * "201 Created" and closes the connection. No parsing beyond that, no hashing, no threads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum { HEAD_LIMIT = 16 * 1024, BLOCK = 256 * 1024 };

static char block[BLOCK];

static int send_all(int fd, const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t sent = send(fd, text, length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        text += sent;
        length -= (size_t)sent;
    }
    return 0;
}

static int write_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

/* The value of header `name` in the request head, or NULL. `head` is NUL-terminated. */
static const char *header(const char *head, const char *name) {
    size_t length = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, length) == 0 && line[length] == ':') {
            const char *value = line + length + 1;
            while (*value == ' ' || *value == '\t') value++;
            return value;
        }
    }
    return NULL;
}

/* Handles one request on `client`; returns the status line it answered with. */
static const char *handle(int client, int directory, const char *directory_path) {
    char head[HEAD_LIMIT + 1];
    size_t received = 0;
    char *end = NULL;
    while (end == NULL) {
        if (received == HEAD_LIMIT) return "431 Request Header Fields Too Large";
        ssize_t count = recv(client, head + received, HEAD_LIMIT - received, 0);
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) return NULL;
        received += (size_t)count;
        head[received] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    size_t head_length = (size_t)(end - head) + 4;
    size_t early_body = received - head_length;

    /* "PUT /any/path/NAME HTTP/1.1": the file is named after the last path segment. */
    char method[8], target[1024];
    if (sscanf(head, "%7s %1023s", method, target) != 2) return "400 Bad Request";
    if (strcmp(method, "PUT") != 0) return "405 Method Not Allowed";
    const char *name = strrchr(target, '/');
    name = name ? name + 1 : target;
    if (*name == '\0' || *name == '.' || strlen(name) > 200) return "400 Bad Request";
    const char *length_text = header(head, "Content-Length");
    if (length_text == NULL) return "411 Length Required";
    char *length_end;
    errno = 0;
    unsigned long long remaining = strtoull(length_text, &length_end, 10);
    if (errno != 0 || length_end == length_text) return "400 Bad Request";
    if (early_body > remaining) return "400 Bad Request";
    const char *expect = header(head, "Expect");
    if (expect != NULL && strncasecmp(expect, "100-continue", 12) == 0) {
        if (send_all(client, "HTTP/1.1 100 Continue\r\n\r\n") != 0) return NULL;
    }

    char temporary[256];
    snprintf(temporary, sizeof temporary, ".sink-%s", name);
    int file = openat(directory, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file < 0) return "500 Internal Server Error";
    const char *status = "201 Created";
    if (write_all(file, head + head_length, early_body) != 0) status = "500 Internal Server Error";
    remaining -= early_body;
    while (remaining > 0 && status[0] == '2') {
        size_t wanted = remaining < BLOCK ? (size_t)remaining : BLOCK;
        ssize_t count = recv(client, block, wanted, 0);
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) status = NULL; /* the client went away */
        else if (write_all(file, block, (size_t)count) != 0) status = "500 Internal Server Error";
        else remaining -= (unsigned long long)count;
    }
    if (status != NULL && status[0] == '2') {
        if (fsync(file) != 0 || renameat(directory, temporary, directory, name) != 0 || fsync(directory) != 0) {
            status = "500 Internal Server Error";
        }
    }
    close(file);
    if (status == NULL || status[0] != '2') {
        unlinkat(directory, temporary, 0);
        if (status != NULL) fprintf(stderr, "sink: %s/%s: %s\n", directory_path, name, status);
    }
    return status;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: sink DIR\n");
        return 2;
    }
    int directory = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory < 0) {
        perror(argv[1]);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t address_length = sizeof address;
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(listener, 64) != 0 || getsockname(listener, (struct sockaddr *)&address, &address_length) != 0) {
        perror("sink: listen");
        return 1;
    }
    printf("listening 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);

    for (;;) {
        int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            perror("sink: accept");
            return 1;
        }
        const char *status = handle(client, directory, argv[1]);
        if (status != NULL) {
            char reply[128];
            snprintf(reply, sizeof reply, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
            send_all(client, reply);
        }
        close(client);
    }
}
