/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** All buffers of one exporter (for heap buffers, the heap name). */
@VintfStability
parcelable HeapUsage {
    String exporter;
    long bytes;
    int buffers;
}
