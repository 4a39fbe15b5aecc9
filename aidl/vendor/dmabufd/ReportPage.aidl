/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.Report;

/** (V2) One page of a report snapshot, see IAccounting.getReportPage. */
@VintfStability
parcelable ReportPage {
    /**
     * The next items of the snapshot, at most 256 KiB encoded: the arrays of the pages, each
     * appended to the previous pages' in order, give the whole report (buffers first, then
     * processes, apps, names, heaps). Totals are the snapshot's, complete on every page.
     */
    Report report;
    /** Pass to the next call to continue; 0 after the last page. */
    long cursor;
}
