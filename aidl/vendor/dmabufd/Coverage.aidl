/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.RequestedUsage;
import vendor.dmabufd.SourceUse;
import vendor.dmabufd.UnreadableUid;

/**
 * (V3) What a report could not see. On a device the service reads /proc as uid system without
 * CAP_SYS_PTRACE: other uids' processes are closed to it, and a buffer the kernel lists that no
 * readable process holds has unknown holders (it is not kernel-only). An AppUsage of a uid listed
 * in unreadable is partial (a lower bound). A V2 service sends none: sources is then empty.
 */
@VintfStability
parcelable Coverage {
    /** Every source tried, in order: procfs first, then the kernel's buffer lists, the
     * per-process counters, the ledger. */
    SourceUse[] sources;
    /** Effective uid /proc was read as; -1 when not recorded. */
    long scannerUid = -1;
    /** Processes that could not be read, per uid, ascending (the selected uid's only in a report
     * filtered by uid). */
    UnreadableUid[] unreadable;
    /** Processes that exited while the scan read them. */
    int vanishedProcesses;
    /** Bytes of live buffers that no readable process holds while some process could not be
     * read: listed by the kernel, or live in the ledger where no kernel list was readable. */
    long unknownHolderBytes;
    /** Number of those buffers. */
    int unknownHolderBuffers;
    /** The service's ledger per uid, ascending: what each uid asked for that is still live. */
    RequestedUsage[] requested;
}
