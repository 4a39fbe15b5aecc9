/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/**
 * (V3) Per uid, over the buffers of a HandoffPage snapshot: bytes it asked for that are still
 * alive against bytes its processes hold now. An asker holding none handed its buffers on.
 */
@VintfStability
parcelable UidBalance {
    /** Bit for bit (read as unsigned). */
    int uid;
    /** Bytes of live buffers the uid asked for (entries rebuilt after a restart count for none). */
    long askedBytes;
    int askedBuffers;
    /** Bytes of distinct buffers of the snapshot that processes of the uid hold now. */
    long heldBytes;
    int heldBuffers;
}
