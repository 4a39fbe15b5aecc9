/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** System-wide sums of one scan. */
@VintfStability
parcelable Totals {
    /** Bytes of all exported buffers per debugfs/sysfs; -1 when the kernel does not tell. */
    long exportedBytes;
    long userspaceRss;
    long userspacePss;
    /** Bytes of buffers that no process holds by fd or mapping. */
    long kernelOnlyBytes;
    /** Processes skipped because they vanished or could not be read. */
    int unreadableProcesses;
}
