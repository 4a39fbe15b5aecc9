/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/**
 * What a client asks of IAllocator.allocate().
 * Sizes are signed because AIDL has no unsigned types; negative values are rejected with
 * IAllocator.ERROR_INVALID_ARGUMENT.
 */
@VintfStability
parcelable AllocationRequest {
    /** Heap name as it appears under /dev/dma_heap, e.g. "system". Never a path. */
    String heap;
    /** Bytes wanted; the kernel rounds up to whole pages. */
    long size;
    /**
     * Purpose name: 1 to 128 bytes (UTF-8), no control characters ("CAMERA", "GL", "codec:avc").
     * The kernel keeps 31 bytes: DMA_BUF_SET_NAME gets the longest prefix of whole characters
     * within 31 bytes, set before the fd leaves the service. The ledger keeps the whole name and
     * every report of the service shows it for the buffer (unless a holder renamed it since).
     * (Before V3 the service refused names over 31 bytes.)
     */
    String name;
    /**
     * Heap flags, passed to the heap bit for bit (all 64 bits: read as unsigned). Mainline heaps
     * accept only 0; vendor heaps define their own bits, and only the heap can say which it takes
     * (a refusal is IAllocator.ERROR_INVALID_ARGUMENT).
     */
    long heapFlags;
}
