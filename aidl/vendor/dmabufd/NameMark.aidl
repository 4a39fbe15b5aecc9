/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) High-water mark of the bytes of all live buffers of one name, see History. */
@VintfStability
parcelable NameMark {
    /** The whole name as the client gave it. */
    String name;
    long peakBytes;
    long peakMillis;
    long currentBytes;
}
