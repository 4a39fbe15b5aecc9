/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) A process holding a buffer now, as the scan of a HandoffPage saw it. */
@VintfStability
parcelable Holder {
    int pid;
    /** Real uid, bit for bit (read as unsigned). */
    int uid;
    /** Command name from /proc/<pid>/status. */
    String comm;
    /** Fds of the process that refer to the buffer. */
    int fdCount;
    /** Mappings (VMAs) of the buffer in the process. */
    int mapCount;
}
