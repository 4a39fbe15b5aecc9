/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** dma-buf usage of one process (thread-group leader). All byte counts are exact. */
@VintfStability
parcelable ProcessUsage {
    int pid;
    int uid;
    String comm;
    /** Sum of sizes of distinct buffers referenced by fd or mapping. */
    long rss;
    /** Each buffer's size shared evenly among its holders, remainders distributed exactly. */
    long pss;
    /** Bytes of distinct buffers held through at least one fd. */
    long fdBytes;
    /** Bytes of buffers only mapped (no fd). */
    long mapOnlyBytes;
}
