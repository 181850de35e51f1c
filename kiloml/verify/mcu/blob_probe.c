/* SPDX-License-Identifier: Apache-2.0 */
/* Size probe of the parameter-blob loader: the budget probe (the library's whole API,
 * kml_decide_latest included) plus kml_blob_check / kml_blob_activate / kml_selftest and
 * the anti-rollback accessors on a blob wherever the application keeps it (a flash
 * partition; not counted). Linked with budget_main.c's probe alone, the difference is
 * what the loader adds. */
#include <stdint.h>

#define KML_PROBE_DECIDE 1
#define main kml_budget_probe_main
#include "budget_main.c"
#undef main

#ifndef KML_NO_LIBRARY
#include "kml_blob.h"
#endif

int main(void)
{
    int32_t r = kml_budget_probe_main();
#ifndef KML_NO_LIBRARY
    const uint8_t *volatile blob = (const uint8_t *)0x00040000u;
    const volatile uint32_t *bytes = (const volatile uint32_t *)0x20000004u;
    kml_blob_set_min_counter(*bytes);
    r += kml_blob_check(blob, *bytes);
    r += kml_blob_activate(blob, *bytes);
    r += kml_selftest();
    r += (int32_t)kml_blob_min_counter();
#endif
    return (int)r;
}
