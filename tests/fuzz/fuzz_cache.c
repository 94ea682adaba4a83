/* SPDX-License-Identifier: Apache-2.0 */
/* lib/cache on arbitrary input: the local protocol's decoder (lib/cache/local.h), and the two local report
 * verifiers (sim and SGX) under fixed keys.
 *
 * Input: byte 0 picks the target. 'S': the rest is a sim local report; 'G': the rest is an SGX REPORT. Anything
 * else: the whole input is one message body (version, type, payload).
 * Invariants: nothing crashes or leaks; a refused body leaves the message zeroed; an accepted body encodes back to
 * exactly the same bytes (the encoding is canonical: no field has two spellings), framed with its size; a report
 * under a fixed key is refused unless its MAC is right (which random input does not reach). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/local.h"

static void check(int cond)
{
    if (!cond)
        abort();
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void message(const uint8_t *data, size_t size)
{
    struct veil_la_msg m;
    if (!veil_ok(veil_la_decode(data, size, &m))) {
        check(all_zero(&m, sizeof m));
        return;
    }
    check(m.type >= VEIL_LA_HELLO && m.type <= VEIL_LA_ERROR);
    struct veil_buf f;
    veil_buf_init(&f);
    check(veil_ok(veil_la_encode(&m, &f)));
    size_t n = 0;
    check(veil_ok(veil_la_frame_size(f.data, &n)));
    check(n == size && f.size == size + 4 && memcmp(f.data + 4, data, size) == 0);
    veil_buf_cleanup(&f);
}

static struct veil_result fixed_key(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE], uint8_t key[16])
{
    (void)ctx, (void)key_id;
    memset(key, 0x42, 16);
    return VEIL_RESULT_OK;
}

static void reports(uint8_t which, const uint8_t *data, size_t size)
{
    static const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE] = {1}, self[VEIL_LA_SIM_MEASUREMENT_SIZE] = {2};
    static const uint8_t expected[VEIL_REPORT_DATA_SIZE] = {3};
    if (which == 'S') {
        uint8_t seen[VEIL_LA_SIM_MEASUREMENT_SIZE];
        check(!veil_ok(veil_la_sim_verify(key, self, data, size, expected, seen)));
        return;
    }
    static const uint8_t mr[1][VEIL_SGX_MR_SIZE] = {{4}};
    struct veil_sgx_peer_policy p = {.mrenclaves = mr, .mrenclave_count = 1};
    struct veil_sgx_report r;
    if (veil_ok(veil_sgx_report_parse(data, size, &r)))
        check(size == VEIL_SGX_REPORT_SIZE);
    check(!veil_ok(veil_sgx_report_verify(data, size, fixed_key, NULL, &p, expected, &r)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] == 'S' || data[0] == 'G'))
        reports(data[0], data + 1, size - 1);
    else
        message(data, size);
    return 0;
}
