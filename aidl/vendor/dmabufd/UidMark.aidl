/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) High-water mark of one uid's bytes allocated through the service, see History. */
@VintfStability
parcelable UidMark {
    /** Bit for bit (read as unsigned). */
    int uid;
    /** The most bytes charged to the uid at once since the history was reset. */
    long peakBytes;
    /** When the peak was reached, milliseconds since the epoch. */
    long peakMillis;
    /** Bytes charged to the uid now. */
    long currentBytes;
}
