/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) One uid's live allocations through IAllocator, per the ledger. */
@VintfStability
parcelable RequestedUsage {
    int uid;
    int buffers;
    /** Bytes of those buffers: complete for allocations through the service. */
    long bytes;
    /** Bytes of those buffers that the scan saw held by a readable process. */
    long heldBytes;
}
