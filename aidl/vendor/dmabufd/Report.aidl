/*
 * Copyright (C) 2026 The dmabufd Authors
 * SPDX-License-Identifier: Apache-2.0
 */
package vendor.dmabufd;

import vendor.dmabufd.AppUsage;
import vendor.dmabufd.BufferInfo;
import vendor.dmabufd.Coverage;
import vendor.dmabufd.HeapUsage;
import vendor.dmabufd.NameUsage;
import vendor.dmabufd.ProcessUsage;
import vendor.dmabufd.Totals;

/**
 * Every view of one consistent scan. A filtered report (one uid or pid) contains only the
 * buffers that the selected processes reference, and totals over those.
 */
@VintfStability
parcelable Report {
    BufferInfo[] buffers;
    ProcessUsage[] processes;
    AppUsage[] apps;
    NameUsage[] names;
    HeapUsage[] heaps;
    Totals totals;
    /** (V3) What the report could not see; on every page of a paged report. */
    Coverage coverage;
}
