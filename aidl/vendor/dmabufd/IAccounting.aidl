/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.HandoffPage;
import vendor.dmabufd.History;
import vendor.dmabufd.LedgerEntry;
import vendor.dmabufd.LedgerPage;
import vendor.dmabufd.Report;
import vendor.dmabufd.ReportPage;

/**
 * dma-buf accounting: who holds which buffer, and who asked for it.
 * Instance: vendor.dmabufd.IAccounting/default
 *
 * Callers on the service's allowlist (root and system by default) may query any uid or pid;
 * everyone else only their own uid, otherwise IAllocator.ERROR_PERMISSION_DENIED.
 *
 * A report costs a scan of every process, so scans are shared: a scan answers every query until
 * it is max(100 ms, 5 times its own duration) old (100 ms after an allocation through the
 * service), and a report may be that old.
 *
 * Paging (V2): a call with cursor 0 takes a snapshot and returns its first page with a cursor;
 * each call with the returned cursor (and the same uid and pid) returns the next page, until the
 * cursor is 0. All pages of one snapshot describe the same instant. A snapshot lives until its
 * last page is read, or 30 s after its last call, or until its caller has opened two newer ones;
 * a cursor that outlived it fails with IAllocator.ERROR_CURSOR_EXPIRED. Any cursor of an open
 * snapshot may be asked for again (after a failed transaction, say).
 */
@VintfStability
interface IAccounting {
    /**
     * Selects every process (for uid and pid arguments). In V1's `int uid` arguments it is also
     * uid 4294967295 read as signed, which V1 therefore cannot select; V2's `long uid` arguments
     * carry every uid as 0..4294967295.
     */
    const int ALL = -1;

    /**
     * A scan of the whole system, or of one uid or one pid (ALL for no filter; giving both
     * selects the processes that match both). Unknown uid or pid: an empty report.
     * Fails with IAllocator.ERROR_REPLY_TOO_LARGE if the report exceeds one page.
     */
    Report getReport(int uid, int pid);

    /** Shorthand for getReport(caller's uid, ALL); always allowed. */
    Report getMyUsage();

    /**
     * Live allocations made through IAllocator, optionally for one uid (ALL for every uid).
     * Fails with IAllocator.ERROR_REPLY_TOO_LARGE if the entries exceed one page.
     */
    LedgerEntry[] getLedger(int uid);

    /**
     * (V2) getReport, paged (see above): uid is a Linux uid (0..4294967295) or ALL, pid a pid
     * or ALL. Other values: IAllocator.ERROR_INVALID_ARGUMENT.
     */
    ReportPage getReportPage(long uid, int pid, long cursor);

    /** (V2) getLedger, paged (see above): uid is a Linux uid (0..4294967295) or ALL. */
    LedgerPage getLedgerPage(long uid, long cursor);

    /**
     * (V3) Asked-by versus held-by, paged (see above): every live buffer the service handed out
     * (asked for by uid, or ALL), oldest first, with who holds it now, from one scan; then the
     * per-uid balance. uid is a Linux uid (0..4294967295) or ALL; callers off the allowlist
     * may ask for their own uid only, and then see every holder of the buffers they asked for.
     */
    HandoffPage getHandoffPage(long uid, long cursor);

    /**
     * (V3) High-water marks and samples since start-up or the last resetHistory (see History).
     * Callers off the allowlist get their own uid's mark only (no names, no samples).
     */
    History getHistory();

    /**
     * (V3) Starts the history afresh: every peak becomes the current bytes, the samples are
     * dropped. Callers off the allowlist: IAllocator.ERROR_PERMISSION_DENIED.
     */
    void resetHistory();
}
