/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.BufferRef;

/** One dma-buf, deduplicated by inode. */
@VintfStability
parcelable BufferInfo {
    long inode;
    long size;
    /** Exporter (heap) name from fdinfo or debugfs; empty when the kernel did not tell. */
    String exporter;
    /**
     * Purpose name; empty when unnamed. The kernel takes any bytes but NUL, so this is their
     * UTF-8 reading with invalid sequences replaced by U+FFFD; nameBytes has the bytes themselves.
     */
    String name;
    /** Processes holding it by fd or mapping; empty for buffers only the kernel holds. */
    BufferRef[] refs;
    /** (V2) The purpose name exactly as the kernel holds it; empty when unnamed. */
    byte[] nameBytes;
}
