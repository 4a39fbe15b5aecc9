/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
// API snapshot of the vendor.dmabufd AIDL interface, generated; do not edit.
// Regenerate: `m vendor.dmabufd-update-api` in AOSP, or tests/aosp/dumpapi.

package vendor.dmabufd;
@VintfStability
interface IAllocator {
  vendor.dmabufd.Allocation allocate(in vendor.dmabufd.AllocationRequest request);
  String[] getHeaps();
  const int ERROR_INVALID_ARGUMENT = 1;
  const int ERROR_UNKNOWN_HEAP = 2;
  const int ERROR_INVALID_NAME = 3;
  const int ERROR_OUT_OF_MEMORY = 4;
  const int ERROR_QUOTA_EXCEEDED = 5;
  const int ERROR_PERMISSION_DENIED = 6;
  const int ERROR_UNSUPPORTED = 7;
  const int ERROR_IO = 8;
  const int ERROR_CURSOR_EXPIRED = 9;
  const int ERROR_REPLY_TOO_LARGE = 10;
}
