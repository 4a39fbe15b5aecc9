/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
// API snapshot of the vendor.dmabufd AIDL interface, generated; do not edit.
// Regenerate: `m vendor.dmabufd-update-api` in AOSP, or tests/aosp/dumpapi.

package vendor.dmabufd;
@VintfStability
parcelable Coverage {
  vendor.dmabufd.SourceUse[] sources;
  long scannerUid = -1;
  vendor.dmabufd.UnreadableUid[] unreadable;
  int vanishedProcesses;
  long unknownHolderBytes;
  int unknownHolderBuffers;
  vendor.dmabufd.RequestedUsage[] requested;
}
