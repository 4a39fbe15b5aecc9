/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.Allocation;
import vendor.dmabufd.AllocationRequest;

/**
 * Allocates named dma-bufs from /dev/dma_heap and records who asked.
 * Instance: vendor.dmabufd.IAllocator/default
 *
 * Errors are service-specific exceptions carrying one of the ERROR_* codes below; IAccounting
 * uses the same codes.
 */
@VintfStability
interface IAllocator {
    /** Malformed request: size 0, negative or too large, unknown flags, bad pid or uid. */
    const int ERROR_INVALID_ARGUMENT = 1;
    /** No such heap under /dev/dma_heap; getHeaps() lists the ones that exist. */
    const int ERROR_UNKNOWN_HEAP = 2;
    /**
     * Name empty, longer than 128 bytes (V3; 31 before), not UTF-8, or holding control
     * characters.
     */
    const int ERROR_INVALID_NAME = 3;
    /** The heap could not satisfy the request (ENOMEM). */
    const int ERROR_OUT_OF_MEMORY = 4;
    /** The caller's uid would exceed its outstanding-bytes quota. */
    const int ERROR_QUOTA_EXCEEDED = 5;
    /**
     * The caller may not see other uids' data, or the service itself was denied access to a
     * kernel interface (a heap device, /proc); the message says which.
     */
    const int ERROR_PERMISSION_DENIED = 6;
    /**
     * The kernel lacks a needed feature (e.g. DMA_BUF_SET_NAME before Linux 5.3) or refused
     * it for this buffer (renaming while devices are attached).
     */
    const int ERROR_UNSUPPORTED = 7;
    /** Any other failure of a kernel interface (an I/O error); the message names it. */
    const int ERROR_IO = 8;
    /**
     * (V2) A paging cursor that names no open snapshot: it finished, expired (idle for 30 s),
     * was evicted by newer snapshots, or belongs to another caller or query. Start again with
     * cursor 0.
     */
    const int ERROR_CURSOR_EXPIRED = 9;
    /**
     * (V2) A V1 query (IAccounting.getReport, getMyUsage, getLedger) whose reply would exceed
     * one page (256 KiB): binder could not deliver it. Use the paged V2 methods.
     */
    const int ERROR_REPLY_TOO_LARGE = 10;

    /** Allocate, name, record; the returned fd is the only reference. */
    Allocation allocate(in AllocationRequest request);

    /** Names of the heaps under /dev/dma_heap, sorted. */
    String[] getHeaps();
}
