#include "net/loop.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { LOOP_BATCH = 256 };

int
loop_init(struct loop *l, void (*on_wake)(struct loop_watch *, uint32_t))
{
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -errno;
	l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wakefd < 0)
		goto fail_ep;
	l->wake_watch.cb = on_wake;
	if (loop_add_listener(l, l->wakefd, &l->wake_watch))
		goto fail_ev;
	return 0;

fail_ev:
	close(l->wakefd);
fail_ep:
	close(l->epfd);
	return -errno;
}

void
loop_destroy(struct loop *l)
{
	close(l->wakefd);
	close(l->epfd);
}

int
loop_add(struct loop *l, int fd, struct loop_watch *w)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.ptr = w,
	};

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int
loop_add_listener(struct loop *l, int fd, struct loop_watch *w)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int
loop_add_shared_listener(struct loop *l, int fd, struct loop_watch *w)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
				  .data.ptr = w };

	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

void
loop_del(struct loop *l, int fd)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int
loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	struct loop_watch *w;
	int n, i;

	n = epoll_wait(l->epfd, evs, LOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	for (i = 0; i < n; i++) {
		w = evs[i].data.ptr;
		w->cb(w, evs[i].events);
	}
	return n;
}

void
loop_wake(struct loop *l)
{
	uint64_t one = 1;

	if (write(l->wakefd, &one, sizeof(one)) < 0)
		return;	/* counter saturated: a wake-up is pending anyway */
}

void
loop_wake_drain(struct loop *l)
{
	uint64_t v;

	while (read(l->wakefd, &v, sizeof(v)) > 0)
		;
}
