/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.Holder;
import vendor.dmabufd.LedgerEntry;

/** (V3) One live buffer the service handed out: who asked for it, and who holds it now. */
@VintfStability
parcelable Handoff {
    /** The ledger's record of the allocation (uid, pid, time, the whole name). */
    LedgerEntry asked;
    /**
     * Processes holding it by fd or mapping, ascending pid. Empty: only the kernel holds it
     * (a device uses it, an fd is in flight over a socket, or it leaked).
     */
    Holder[] holders;
}
