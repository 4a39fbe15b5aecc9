/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/**
 * Who asked for a live buffer. This is the allocation attribution that /proc cannot give: the
 * holder of a buffer now may differ from the client that asked for it.
 */
@VintfStability
parcelable LedgerEntry {
    long inode;
    long size;
    String name;
    String heap;
    /** Binder calling uid; -1 when the entry was rebuilt after a restart and nobody is known. */
    int uid;
    /** Binder calling pid; -1 when unknown. */
    int pid;
    /** CLOCK_REALTIME of the allocation, milliseconds since the epoch; 0 when unknown. */
    long timeMillis;
    /** False for entries rebuilt from the kernel after a service restart. */
    boolean attributed;
}
