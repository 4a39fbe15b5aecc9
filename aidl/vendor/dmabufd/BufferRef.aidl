/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** How one process references one buffer. */
@VintfStability
parcelable BufferRef {
    int pid;
    /** Number of fds of the process that refer to the buffer. */
    int fdCount;
    /** Number of mappings (VMAs) of the buffer in the process. */
    int mapCount;
}
