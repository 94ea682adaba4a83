/* SPDX-License-Identifier: Apache-2.0 */
/* Frames of the local protocol on a stream socket (local.h). The caller owns the socket, its timeouts
 * (SO_RCVTIMEO / SO_SNDTIMEO) and its peer checks. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cache/local.h"
#include "core/secret.h"

static VEIL_RESULT send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(k > 0, VEIL_ERR_IO, "cannot send on the local socket: %s", k < 0 ? strerror(errno) : "closed");
        p += k, n -= (size_t)k;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT recv_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        VEIL_ENSURE(k >= 0, VEIL_ERR_IO, "cannot read the local socket: %s",
                    errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
        VEIL_ENSURE(k > 0, VEIL_ERR_IO, "the local peer closed the connection");
        p += k, n -= (size_t)k;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_la_send(int fd, const struct veil_la_msg *m)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf frame;
    veil_buf_init_secret(&frame);
    VEIL_GUARD(veil_la_encode(m, &frame));
    return send_all(fd, frame.data, frame.size);
}

VEIL_RESULT veil_la_recv(int fd, struct veil_buf *body, struct veil_la_msg *m)
{
    memset(m, 0, sizeof *m);
    uint8_t header[4];
    size_t size = 0;
    VEIL_GUARD(recv_all(fd, header, sizeof header));
    VEIL_GUARD(veil_la_frame_size(header, &size));
    if (body->size > 0)
        veil_wipe(body->data, body->size);
    body->size = 0;
    VEIL_GUARD(veil_buf_reserve(body, size));
    VEIL_GUARD(recv_all(fd, body->data, size));
    body->size = size;
    return veil_la_decode(body->data, body->size, m);
}
