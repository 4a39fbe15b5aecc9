/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** Usage of all processes that run as one Linux uid (an Android app or system user). */
@VintfStability
parcelable AppUsage {
    int uid;
    /** Sum of sizes of distinct buffers referenced by any process of the uid. */
    long rss;
    /** Sum of the Pss of the uid's processes. */
    long pss;
    /** Number of distinct buffers. */
    int buffers;
}
