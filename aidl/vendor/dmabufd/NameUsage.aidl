/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** All buffers that share one purpose name ("" for unnamed buffers). */
@VintfStability
parcelable NameUsage {
    String name;
    long bytes;
    int buffers;
}
