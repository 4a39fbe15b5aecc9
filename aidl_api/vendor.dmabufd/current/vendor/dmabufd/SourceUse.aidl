/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
// API snapshot of the vendor.dmabufd AIDL interface, generated; do not edit.
// Regenerate: `m vendor.dmabufd-update-api` in AOSP, or tests/aosp/dumpapi.

package vendor.dmabufd;
@VintfStability
parcelable SourceUse {
  String source;
  String state;
  String detail;
}
