/*
 * udpsend: unconnected UDP sends the way C programs do them, for the tether
 * integration tests (built static with musl-gcc by harness.MuslBinary).
 * The destination is fixed at compile time: -DDST_IP=A,B,C,D -DDST_PORT=N.
 *
 *   udpsend sendto-rodata MSG
 *       sendto() with the destination in a `static const struct
 *       sockaddr_in` (.rodata: the supervisor cannot rewrite it in place);
 *       prints "dst-mapping: PERMS" (its /proc/self/maps permissions,
 *       exit 1 if writable), "sent: N", then recvfrom():
 *       "reply: DATA from IP:PORT".
 *   udpsend sendmmsg recvfrom|recvmmsg MSG1 MSG2
 *       one sendmmsg() of two messages, each with msg_name set (a writable
 *       copy of the destination); prints "sent: 2"; then the two replies,
 *       read with recvfrom() or recvmmsg(): "reply: DATA from IP:PORT" each.
 *
 * Replies are awaited 5 s (SO_RCVTIMEO). Errors go to stderr, exit 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#if !defined(DST_IP) || !defined(DST_PORT)
#error "compile with -DDST_IP=A,B,C,D -DDST_PORT=N"
#endif

/* Network byte order as compile-time constants (htons is not one). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NET16(x) ((uint16_t)((((x)&0xff) << 8) | (((x) >> 8) & 0xff)))
#define NET32_(a, b, c, d) \
	((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
#else
#define NET16(x) ((uint16_t)(x))
#define NET32_(a, b, c, d) \
	(((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))
#endif
#define NET32(ip) NET32_(ip)

static const struct sockaddr_in dst = {
	.sin_family = AF_INET,
	.sin_port = NET16(DST_PORT),
	.sin_addr = {.s_addr = NET32(DST_IP)},
};

static int fail(const char *what) {
	fprintf(stderr, "%s: %s (errno %d)\n", what, strerror(errno), errno);
	return 1;
}

/* udp_socket returns a UDP socket whose receives time out after 5 s. */
static int udp_socket(void) {
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = 5};
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
		return -1;
	return fd;
}

static void print_reply(const char *buf, size_t n, const struct sockaddr_in *from, socklen_t fromlen) {
	char ip[INET_ADDRSTRLEN] = "?";
	if (fromlen >= sizeof(struct sockaddr_in) && from->sin_family == AF_INET)
		inet_ntop(AF_INET, &from->sin_addr, ip, sizeof ip);
	printf("reply: %.*s from %s:%u\n", (int)n, buf, ip, (unsigned)ntohs(from->sin_port));
}

/* recv_one reads one datagram with recvfrom() and prints it. */
static int recv_one(int fd) {
	char buf[2048];
	struct sockaddr_in from;
	socklen_t fromlen = sizeof from;
	memset(&from, 0, sizeof from);
	ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
	if (n < 0)
		return fail("recvfrom");
	print_reply(buf, (size_t)n, &from, fromlen);
	return 0;
}

/* mapping_perms finds the /proc/self/maps permissions of address p. */
static int mapping_perms(const void *p, char perms[5]) {
	FILE *f = fopen("/proc/self/maps", "r");
	if (f == NULL)
		return -1;
	char line[512];
	int found = -1;
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && (unsigned long)p >= lo &&
		    (unsigned long)p < hi) {
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

static int do_sendto_rodata(const char *msg) {
	char perms[5] = "";
	if (mapping_perms(&dst, perms) < 0) {
		fprintf(stderr, "no mapping holds the destination at %p\n", (const void *)&dst);
		return 1;
	}
	printf("dst-mapping: %s\n", perms);
	if (perms[1] == 'w') {
		fprintf(stderr, "the destination is writable (%s); want read-only .rodata\n", perms);
		return 1;
	}
	int fd = udp_socket();
	if (fd < 0)
		return fail("socket");
	ssize_t n = sendto(fd, msg, strlen(msg), 0, (const struct sockaddr *)&dst, sizeof dst);
	if (n < 0)
		return fail("sendto");
	printf("sent: %zd\n", n);
	fflush(stdout);
	return recv_one(fd);
}

static int do_sendmmsg(const char *how, const char *m1, const char *m2) {
	int by_mmsg = strcmp(how, "recvmmsg") == 0;
	if (!by_mmsg && strcmp(how, "recvfrom") != 0) {
		fprintf(stderr, "sendmmsg: want recvfrom or recvmmsg, got %s\n", how);
		return 2;
	}
	int fd = udp_socket();
	if (fd < 0)
		return fail("socket");
	struct sockaddr_in names[2] = {dst, dst};
	const char *msgs[2] = {m1, m2};
	struct iovec iov[2];
	struct mmsghdr mm[2];
	memset(mm, 0, sizeof mm);
	for (int i = 0; i < 2; i++) {
		iov[i].iov_base = (void *)msgs[i];
		iov[i].iov_len = strlen(msgs[i]);
		mm[i].msg_hdr.msg_name = &names[i];
		mm[i].msg_hdr.msg_namelen = sizeof names[i];
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
	int sent = sendmmsg(fd, mm, 2, 0);
	if (sent < 0)
		return fail("sendmmsg");
	printf("sent: %d\n", sent);
	fflush(stdout);
	if (sent != 2) {
		fprintf(stderr, "sendmmsg sent %d of 2 messages\n", sent);
		return 1;
	}
	if (!by_mmsg) {
		for (int i = 0; i < 2; i++)
			if (recv_one(fd) != 0)
				return 1;
		return 0;
	}
	char bufs[2][2048];
	struct sockaddr_in from[2];
	for (int got = 0; got < 2;) {
		struct iovec riov[2];
		struct mmsghdr rm[2];
		memset(rm, 0, sizeof rm);
		memset(from, 0, sizeof from);
		for (int i = 0; i < 2; i++) {
			riov[i].iov_base = bufs[i];
			riov[i].iov_len = sizeof bufs[i];
			rm[i].msg_hdr.msg_name = &from[i];
			rm[i].msg_hdr.msg_namelen = sizeof from[i];
			rm[i].msg_hdr.msg_iov = &riov[i];
			rm[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(fd, rm, (unsigned)(2 - got), MSG_WAITFORONE, NULL);
		if (n < 0)
			return fail("recvmmsg");
		for (int i = 0; i < n; i++)
			print_reply(bufs[i], rm[i].msg_len, &from[i], rm[i].msg_hdr.msg_namelen);
		got += n;
	}
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "sendto-rodata") == 0)
		return do_sendto_rodata(argv[2]);
	if (argc == 5 && strcmp(argv[1], "sendmmsg") == 0)
		return do_sendmmsg(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: udpsend sendto-rodata MSG | sendmmsg recvfrom|recvmmsg MSG1 MSG2\n");
	return 2;
}
