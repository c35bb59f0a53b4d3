# The one place the kernels reach OpenMP's runtime API.
#
# Cython's prange/parallel already compile to plain loops without OpenMP; the
# few runtime calls the kernels need go through this shim so that the package
# still builds (serially) with a compiler that has no OpenMP.  Thread counts are
# always passed to prange(num_threads=...) explicitly: nothing here sets global
# OpenMP state.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define EFFAI_OPENMP_ENABLED 1
    #define EFFAI_OPENMP_VERSION _OPENMP
    #else
    #define EFFAI_OPENMP_ENABLED 0
    #define EFFAI_OPENMP_VERSION 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_threads(void) { return 1; }
    static inline int omp_in_parallel(void) { return 0; }
    #endif
    """
    const bint EFFAI_OPENMP_ENABLED
    const int EFFAI_OPENMP_VERSION
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_threads() noexcept nogil
    int omp_in_parallel() noexcept nogil
