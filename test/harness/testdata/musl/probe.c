/*
 * musl probe: a static C program (musl-gcc -static) for the tether
 * integration tests, exercising musl's own resolver and plain libc calls.
 *
 *   probe resolve NAME          getaddrinfo(AF_INET): addresses, one a line
 *   probe get HOST PORT PATH    resolve + connect + HTTP/1.0 GET:
 *                               "remote: IP:PORT" (getpeername), "", body
 *   probe read FILE             the file's content
 *
 * Errors go to stderr with exit status 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int do_resolve(const char *name) {
	struct addrinfo hints, *res, *p;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(name, NULL, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo %s: %s\n", name, gai_strerror(rc));
		return 1;
	}
	for (p = res; p != NULL; p = p->ai_next) {
		char buf[INET_ADDRSTRLEN];
		struct sockaddr_in *sin = (struct sockaddr_in *)p->ai_addr;
		printf("%s\n", inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf));
	}
	freeaddrinfo(res);
	return 0;
}

static int write_all(int fd, const char *buf, size_t len) {
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int do_get(const char *host, const char *port, const char *path) {
	struct addrinfo hints, *res;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "getaddrinfo %s: %s\n", host, gai_strerror(rc));
		return 1;
	}
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) {
		perror("socket");
		freeaddrinfo(res);
		return 1;
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
		perror("connect");
		freeaddrinfo(res);
		close(fd);
		return 1;
	}
	freeaddrinfo(res);

	struct sockaddr_in peer;
	socklen_t plen = sizeof peer;
	char pbuf[INET_ADDRSTRLEN] = "?";
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
		inet_ntop(AF_INET, &peer.sin_addr, pbuf, sizeof pbuf);
	else
		perror("getpeername");

	char req[1024];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: musl-probe\r\n\r\n", path, host);
	if (n < 0 || (size_t)n >= sizeof req || write_all(fd, req, (size_t)n) != 0) {
		perror("write");
		close(fd);
		return 1;
	}
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		close(fd);
		return 1;
	}
	for (;;) {
		if (len == cap) {
			cap *= 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				close(fd);
				return 1;
			}
			buf = nb;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			perror("read");
			free(buf);
			close(fd);
			return 1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	char *body = strstr(buf, "\r\n\r\n");
	if (!body) {
		fprintf(stderr, "no HTTP header end in %zu bytes\n", len);
		free(buf);
		return 1;
	}
	char *eol = strstr(buf, "\r\n");
	*eol = 0;
	printf("status: %s\nremote: %s:%u\n\n%s", buf, pbuf, (unsigned)ntohs(peer.sin_port), body + 4);
	free(buf);
	return 0;
}

static int do_read(const char *file) {
	FILE *f = fopen(file, "rb");
	if (!f) {
		fprintf(stderr, "open %s: %s\n", file, strerror(errno));
		return 1;
	}
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, stdout);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		fprintf(stderr, "read %s: error\n", file);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc >= 3 && strcmp(argv[1], "resolve") == 0)
		return do_resolve(argv[2]);
	if (argc >= 5 && strcmp(argv[1], "get") == 0)
		return do_get(argv[2], argv[3], argv[4]);
	if (argc >= 3 && strcmp(argv[1], "read") == 0)
		return do_read(argv[2]);
	fprintf(stderr, "usage: probe resolve NAME | get HOST PORT PATH | read FILE\n");
	return 2;
}
