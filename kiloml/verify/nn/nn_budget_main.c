/* SPDX-License-Identifier: Apache-2.0 */
/* Budget probe for a compiled network: the smallest firmware that runs it. Linked at the
 * target's real memory sizes (fails to link if it does not fit) and again without the
 * network (KML_NO_LIBRARY); the difference is what the network adds. */
#include <stdint.h>

#ifndef KML_NO_LIBRARY
#include "kiloml_nn.h"
#endif

int main(void)
{
#ifndef KML_NO_LIBRARY
    kml_nn_input()[0] = (kml_nn_input_t)(*(volatile int8_t *)0x20000000u);
    kml_nn_invoke();
    return (int)kml_nn_output()[0];
#else
    return 0;
#endif
}
