/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
// API snapshot of the vendor.dmabufd AIDL interface, generated; do not edit.
// Regenerate: `m vendor.dmabufd-update-api` in AOSP, or tests/aosp/dumpapi.

package vendor.dmabufd;
@VintfStability
interface IAccounting {
  vendor.dmabufd.Report getReport(int uid, int pid);
  vendor.dmabufd.Report getMyUsage();
  vendor.dmabufd.LedgerEntry[] getLedger(int uid);
  vendor.dmabufd.ReportPage getReportPage(long uid, int pid, long cursor);
  vendor.dmabufd.LedgerPage getLedgerPage(long uid, long cursor);
  vendor.dmabufd.HandoffPage getHandoffPage(long uid, long cursor);
  vendor.dmabufd.History getHistory();
  void resetHistory();
  const int ALL = -1;
}
