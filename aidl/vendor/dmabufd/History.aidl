/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.NameMark;
import vendor.dmabufd.Sample;
import vendor.dmabufd.UidMark;

/**
 * (V3) What the service's allocations did over time, since sinceMillis (start-up or the last
 * IAccounting.resetHistory). Bounded so it always fits one reply: at most 256 uid marks and
 * 256 name marks (when full, the 32 with the lowest peaks among those at 0 bytes now, then the
 * lowest peaks, make room) and the latest 1024 samples.
 *
 * Counted as the quota counts: an allocation adds its bytes at once; a freed buffer's bytes
 * stay until the service prunes its ledger (any ledger, handoff, history or dumpsys query, a
 * quota refusal, or the ledger doubling in size).
 */
@VintfStability
parcelable History {
    long sinceMillis;
    /** Ascending uid. */
    UidMark[] uids;
    /** Ascending name. */
    NameMark[] names;
    /** Oldest first: one per allocation and per prune. */
    Sample[] samples;
}
