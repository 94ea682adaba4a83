/* SPDX-License-Identifier: Apache-2.0 */
/* Frames of the local protocol on a veil_la_conn (local.h): a stream socket, or the TLS session on it. The caller
 * owns the socket, its timeouts (SO_RCVTIMEO / SO_SNDTIMEO, which also bound TLS reads and writes) and its peer
 * checks. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "cache/local.h"
#include "core/secret.h"

/* One read or write of at most n bytes on c: the byte count, 0 when the peer closed, -1 on an error (errno set, or
 * EIO for a TLS failure; EAGAIN when the socket's timeout ran out). */
static ssize_t conn_io(const struct veil_la_conn *c, uint8_t *p, size_t n, int writing)
{
    if (c->ssl == NULL) {
        for (;;) {
            ssize_t k = writing ? send(c->fd, p, n, MSG_NOSIGNAL) : recv(c->fd, p, n, 0);
            if (k >= 0 || errno != EINTR)
                return k;
        }
    }
    size_t done = 0;
    errno = 0;
    int ok = writing ? SSL_write_ex(c->ssl, p, n, &done) : SSL_read_ex(c->ssl, p, n, &done);
    if (ok == 1)
        return (ssize_t)done;
    int e = SSL_get_error(c->ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        errno = EAGAIN;
    else if (e != SSL_ERROR_SYSCALL || errno == 0)
        errno = e == SSL_ERROR_SYSCALL ? EPIPE : EIO;
    return -1;
}

static VEIL_RESULT send_all(const struct veil_la_conn *c, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = conn_io(c, p, n, 1);
        VEIL_ENSURE(k > 0, VEIL_ERR_IO, "cannot send on the local connection: %s",
                    k < 0 ? (errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno)) : "closed");
        p += k, n -= (size_t)k;
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT recv_all(const struct veil_la_conn *c, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = conn_io(c, p, n, 0);
        VEIL_ENSURE(k >= 0, VEIL_ERR_IO, "cannot read the local connection: %s",
                    errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
        VEIL_ENSURE(k > 0, VEIL_ERR_IO, "the local peer closed the connection");
        p += k, n -= (size_t)k;
    }
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_la_send(const struct veil_la_conn *c, const struct veil_la_msg *m)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf frame;
    veil_buf_init_secret(&frame);
    VEIL_GUARD(veil_la_encode(m, &frame));
    return send_all(c, frame.data, frame.size);
}

VEIL_RESULT veil_la_recv(const struct veil_la_conn *c, struct veil_buf *body, struct veil_la_msg *m)
{
    memset(m, 0, sizeof *m);
    uint8_t header[4];
    size_t size = 0;
    VEIL_GUARD(recv_all(c, header, sizeof header));
    VEIL_GUARD(veil_la_frame_size(header, &size));
    if (body->size > 0)
        veil_wipe(body->data, body->size);
    body->size = 0;
    VEIL_GUARD(veil_buf_reserve(body, size));
    VEIL_GUARD(recv_all(c, body->data, size));
    body->size = size;
    return veil_la_decode(body->data, body->size, m);
}

/* What a refusal means for the key: the cache's definitive answers (VEIL_ERR_POLICY) against the transient ones. */
static veil_status refusal_status(uint16_t code)
{
    switch (code) {
    case VEIL_LA_E_PEER:
    case VEIL_LA_E_REPORT:
    case VEIL_LA_E_NOT_ALLOWED:
    case VEIL_LA_E_REVOKED: return VEIL_ERR_POLICY;
    default: return VEIL_ERR_IO;
    }
}

VEIL_RESULT veil_la_expect(const struct veil_la_conn *c, struct veil_buf *body, uint8_t want, struct veil_la_msg *m)
{
    VEIL_GUARD(veil_la_recv(c, body, m));
    if (m->type == VEIL_LA_ERROR)
        VEIL_BAIL(refusal_status(m->error), "veil-cache refused (%s): %s", veil_la_error_name(m->error), m->message);
    VEIL_ENSURE(m->type == want, VEIL_ERR_FORMAT, "veil-cache sent message type %u where %u was expected", m->type,
                want);
    return VEIL_RESULT_OK;
}
