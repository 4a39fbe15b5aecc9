/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.LedgerEntry;
import vendor.dmabufd.Report;

/**
 * dma-buf accounting: who holds which buffer, and who asked for it.
 * Instance: vendor.dmabufd.IAccounting/default
 *
 * Callers on the service's allowlist (root and system by default) may query any uid or pid;
 * everyone else only their own uid, otherwise IAllocator.ERROR_PERMISSION_DENIED.
 */
@VintfStability
interface IAccounting {
    /** Selects every process (for uid and pid arguments). */
    const int ALL = -1;

    /**
     * A scan of the whole system, or of one uid or one pid (ALL for no filter; giving both
     * selects the processes that match both). Unknown uid or pid: an empty report.
     */
    Report getReport(int uid, int pid);

    /** Shorthand for getReport(caller's uid, ALL); always allowed. */
    Report getMyUsage();

    /** Live allocations made through IAllocator, optionally for one uid (ALL for every uid). */
    LedgerEntry[] getLedger(int uid);
}
