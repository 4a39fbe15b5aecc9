/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.LedgerEntry;

/** (V2) One page of a ledger snapshot, see IAccounting.getLedgerPage. */
@VintfStability
parcelable LedgerPage {
    /** The next entries of the snapshot, oldest first; at most 256 KiB encoded. */
    LedgerEntry[] entries;
    /** Pass to the next call to continue; 0 after the last page. */
    long cursor;
}
