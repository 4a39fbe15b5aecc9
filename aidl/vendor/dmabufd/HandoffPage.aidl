/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.Handoff;
import vendor.dmabufd.UidBalance;

/**
 * (V3) One page of an asked-by versus held-by snapshot, see IAccounting.getHandoffPage. The
 * arrays of the pages, each appended to the previous pages', give the whole view: handoffs
 * first (oldest first), then the uids (ascending).
 */
@VintfStability
parcelable HandoffPage {
    Handoff[] handoffs;
    UidBalance[] uids;
    /** CLOCK_REALTIME when the snapshot was taken, milliseconds since the epoch: ages are relative to this. */
    long takenMillis;
    /** Pass to the next call to continue; 0 after the last page. */
    long cursor;
}
