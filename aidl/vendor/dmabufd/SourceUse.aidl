/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) One source of a report and how it served. */
@VintfStability
parcelable SourceUse {
    /** "procfs", "debugfs-bufinfo", "bpf-iter", "sysfs-stats", "dmabuf_rss", "ledger", or a
     * name a later version adds: readers must accept names they do not know. */
    String source;
    /** "used", "absent" (not on this system), "denied" (closed to the service) or "failed". */
    String state;
    /** Where it was read and, if not used, why: for people, not to be parsed. */
    String detail;
}
