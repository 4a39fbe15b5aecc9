/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** A freshly allocated, already named dma-buf. The service keeps no reference to it. */
@VintfStability
parcelable Allocation {
    /** The dma-buf, O_RDWR|O_CLOEXEC; closing it (and unmapping) frees the buffer. */
    ParcelFileDescriptor fd;
    /** The buffer's inode, the key used by every accounting view and by the ledger. */
    long inode;
    /** Size after the kernel's page rounding. */
    long size;
}
