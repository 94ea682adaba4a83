/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer: the sealed-file reader (preamble, header, key wrap, padding, layout) and, for inputs that get that
 * far, key unwrap and chunk authentication under a fixed key. Nothing may crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key[32] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    int fd = memfd_create("fuzz", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        perror("memfd");
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct veil_sealed_info info;
    if (veil_inspect_file(path, &info) == VEIL_OK) {
        veil_model *m = NULL;
        if (veil_model_open(path, key, sizeof key, NULL, &m) == VEIL_OK)
            veil_model_free(m);
    }
    close(fd);
    return 0;
}
