/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) The service's live allocations at one instant, see History. */
@VintfStability
parcelable Sample {
    long timeMillis;
    /** Bytes of every live allocation in the ledger. */
    long bytes;
    int buffers;
}
