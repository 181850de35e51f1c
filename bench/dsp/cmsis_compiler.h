/* The few CMSIS-Core definitions CMSIS-DSP's float FFT needs (GCC, Cortex-M). */
#ifndef CMSIS_COMPILER_H
#define CMSIS_COMPILER_H
#include <stdint.h>
#ifndef __ASM
#define __ASM __asm
#endif
#ifndef __INLINE
#define __INLINE inline
#endif
#ifndef __STATIC_INLINE
#define __STATIC_INLINE static inline
#endif
#ifndef __STATIC_FORCEINLINE
#define __STATIC_FORCEINLINE static inline __attribute__((always_inline))
#endif
#ifndef __ALIGNED
#define __ALIGNED(x) __attribute__((aligned(x)))
#endif
#ifndef __PACKED
#define __PACKED __attribute__((packed, aligned(1)))
#endif
#ifndef __RESTRICT
#define __RESTRICT __restrict
#endif
#define __CLZ (uint8_t)__builtin_clz
#endif
