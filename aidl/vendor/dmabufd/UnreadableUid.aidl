/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

/** (V3) Processes of one uid whose fds or maps were closed to the service. */
@VintfStability
parcelable UnreadableUid {
    int uid;
    int processes;
    /** Sum of the processes' /proc/<pid>/dmabuf_rss (Android common kernels) where readable;
     * -1 when none was. An upper bound of the uid's Rss (shared buffers count per process). */
    long dmabufRss = -1;
    /** Sum of their dmabuf_rss_hwm, as dmabufRss. */
    long dmabufRssHwm = -1;
    /** Sum of their dmabuf_pss, as dmabufRss: the uid's Pss when countedProcesses == processes. */
    long dmabufPss = -1;
    /** How many of the processes' counter files were read. */
    int countedProcesses;
}
