/*
 * verbs.c - libibverbs loaded at run time, and the choice of the device
 * port and GID that reach a peer (kx.rfork's RDMA transport).
 */
#include "rdma.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rf_ibv rf_ibv;

int rf_verbs_load(char *err, size_t errlen)
{
	static int loaded;
	if (loaded)
		return 0;
	void *h = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "RDMA needs libibverbs.so.1 (Debian: libibverbs1 and "
		         "ibverbs-providers): %s", dlerror());
		return -1;
	}
	static const struct { const char *name; size_t off; } fns[] = {
#define F(x) {"ibv_" #x, offsetof(struct rf_ibv, x)}
		F(get_device_list), F(free_device_list), F(get_device_name), F(open_device),
		F(close_device), F(query_device), {"ibv_query_port", offsetof(struct rf_ibv,
		query_port_compat)}, F(query_gid), F(alloc_pd), F(dealloc_pd), F(reg_mr),
		F(dereg_mr), F(create_comp_channel), F(destroy_comp_channel), F(create_cq),
		F(destroy_cq), F(get_cq_event), F(ack_cq_events), F(create_qp), F(modify_qp),
		F(destroy_qp), F(wc_status_str),
#undef F
	};
	struct rf_ibv t;
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		void *f = dlsym(h, fns[i].name);
		if (!f) {
			snprintf(err, errlen, "libibverbs.so.1 has no %s", fns[i].name);
			dlclose(h);
			return -1;
		}
		memcpy((char *)&t + fns[i].off, &f, sizeof f);
	}
	rf_ibv = t;
	loaded = 1;
	return 0;
}

/* verbs.h's inline ibv_query_port, through the loaded library. */
int rf_ibv_query_port(struct ibv_context *c, uint8_t port, struct ibv_port_attr *a)
{
	struct verbs_context *vctx = verbs_get_ctx_op(c, query_port);
	memset(a, 0, sizeof *a);
	if (vctx)
		return vctx->query_port(c, port, a, sizeof *a);
	return rf_ibv.query_port_compat(c, port, (struct _compat_ibv_port_attr *)a);
}

static int wildcard(const char *host)
{
	return !host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::") ||
	       !strcmp(host, "*");
}

/* The local address the kernel would send from to reach host, as a GID
 * (IPv4 mapped into IPv6, as RoCE writes it).  0 or -1 + err. */
static int local_gid_for(const char *host, uint8_t gid[16], char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai;
	int rc = getaddrinfo(host, "4791", &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int ok = fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
	         getsockname(fd, (struct sockaddr *)&ss, &sl) == 0;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	if (!ok) {
		snprintf(err, errlen, "no route to %s: %s", host, strerror(saved));
		return -1;
	}
	memset(gid, 0, 16);
	if (ss.ss_family == AF_INET) {
		gid[10] = gid[11] = 0xff;
		memcpy(gid + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else {
		memcpy(gid, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	}
	return 0;
}

static int ipv4_mapped(const uint8_t g[16])
{
	static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return !memcmp(g, pre, 12);
}

/* RoCE v2 GIDs are preferred over v1 ones of the same address. */
static int roce_v2(const char *dev, int port, int idx)
{
	char path[256], buf[32] = "";
	snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports/%d/gid_attrs/types/%d", dev,
	         port, idx);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 && strstr(buf, "v2") != NULL;
}

static const char *port_state(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_DOWN: return "DOWN";
	case IBV_PORT_INIT: return "INIT";
	case IBV_PORT_ARMED: return "ARMED";
	case IBV_PORT_ACTIVE: return "ACTIVE";
	default: return "not active";
	}
}

/* Looks at one device; 1 when a port of it fits (*p filled), 0 when none
 * does (why appended to note). */
static int try_device(struct ibv_context *ctx, const char *name, int want_port, int want_gid,
                      const uint8_t *want, struct rf_rdma_port *p, char *note, size_t notelen)
{
	struct ibv_device_attr da;
	if (rf_ibv.query_device(ctx, &da)) {
		snprintf(note + strlen(note), notelen - strlen(note), "; %s: query failed", name);
		return 0;
	}
	int rd = da.max_qp_rd_atom < da.max_qp_init_rd_atom ? da.max_qp_rd_atom
	                                                    : da.max_qp_init_rd_atom;
	for (int port = 1; port <= da.phys_port_cnt; port++) {
		if (want_port && port != want_port)
			continue;
		struct ibv_port_attr pa;
		if (rf_ibv_query_port(ctx, port, &pa))
			continue;
		if (pa.state != IBV_PORT_ACTIVE) {
			snprintf(note + strlen(note), notelen - strlen(note), "; %s port %d is %s", name,
			         port, port_state(pa.state));
			continue;
		}
		int best = -1;
		union ibv_gid g, bestg;
		for (int i = 0; i < pa.gid_tbl_len; i++) {
			if (want_gid >= 0 && i != want_gid)
				continue;
			if (rf_ibv.query_gid(ctx, port, i, &g))
				continue;
			static const uint8_t zero[16];
			if (!memcmp(g.raw, zero, 16))
				continue;
			int fits = want_gid >= 0 || pa.link_layer == IBV_LINK_LAYER_INFINIBAND
			           ? 1 : want ? !memcmp(g.raw, want, 16) : ipv4_mapped(g.raw);
			if (fits && (best < 0 || (!roce_v2(name, port, best) && roce_v2(name, port, i))))
				best = i, bestg = g;
			if (pa.link_layer == IBV_LINK_LAYER_INFINIBAND)
				break;   /* GID 0 */
		}
		if (best < 0) {
			char a[INET6_ADDRSTRLEN] = "?";
			if (want)
				inet_ntop(AF_INET6, want, a, sizeof a);
			snprintf(note + strlen(note), notelen - strlen(note), "; %s port %d has no GID "
			         "%s", name, port, want ? a : "with an IPv4 address");
			continue;
		}
		memset(p, 0, sizeof *p);
		snprintf(p->name, sizeof p->name, "%s", name);
		p->port = port;
		p->gid_index = best;
		p->ib = pa.link_layer == IBV_LINK_LAYER_INFINIBAND;
		memcpy(p->ep.gid, bestg.raw, 16);
		p->ep.lid = pa.lid;
		p->ep.mtu = pa.active_mtu;
		p->ep.rd_atomic = rd < 1 ? 1 : rd > 16 ? 16 : rd;
		return 1;
	}
	return 0;
}

int rf_rdma_pick(const char *host, struct rf_rdma_port *p, struct ibv_context **ctxp, char *err,
                 size_t errlen)
{
	if (rf_verbs_load(err, errlen) < 0)
		return -1;
	/* KXRUN_RFORK_RDMA_DEVICE=NAME[:PORT[:GID]] */
	char want_name[64] = "";
	int want_port = 0, want_gid = -1;
	const char *e = getenv("KXRUN_RFORK_RDMA_DEVICE");
	if (e && *e) {
		char tmp[96];
		snprintf(tmp, sizeof tmp, "%s", e);
		char *c1 = strchr(tmp, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c1)
			*c1 = 0, want_port = atoi(c1 + 1);
		if (c2)
			want_gid = atoi(c2 + 1);
		snprintf(want_name, sizeof want_name, "%s", tmp);
	}
	uint8_t want[16];
	int have_want = 0;
	if (!wildcard(host) && want_gid < 0) {
		if (local_gid_for(host, want, err, errlen) < 0)
			return -1;
		have_want = 1;
	}
	int n = 0;
	struct ibv_device **list = rf_ibv.get_device_list(&n);
	if (!list || n == 0) {
		if (list)
			rf_ibv.free_device_list(list);
		snprintf(err, errlen, "no RDMA device (libibverbs finds none: load a driver, e.g. "
		         "Soft-RoCE: modprobe rdma_rxe; rdma link add rxe0 type rxe netdev eth0)");
		return -1;
	}
	char note[512] = "";
	int found = 0;
	for (int i = 0; i < n && !found; i++) {
		const char *name = rf_ibv.get_device_name(list[i]);
		if (*want_name && strcmp(name, want_name))
			continue;
		struct ibv_context *ctx = rf_ibv.open_device(list[i]);
		if (!ctx) {
			snprintf(note + strlen(note), sizeof note - strlen(note), "; %s: cannot open: %s",
			         name, strerror(errno));
			continue;
		}
		found = try_device(ctx, name, want_port, want_gid, have_want ? want : NULL, p, note,
		                   sizeof note);
		if (found && ctxp)
			*ctxp = ctx;
		else
			rf_ibv.close_device(ctx);
	}
	rf_ibv.free_device_list(list);
	if (found)
		return 0;
	if (*want_name && !*note)
		snprintf(note, sizeof note, "; no device %s (KXRUN_RFORK_RDMA_DEVICE)", want_name);
	snprintf(err, errlen, "no RDMA device reaches %s%s", wildcard(host) ? "this host" : host,
	         note);
	return -1;
}
