# The kernels of _kd.pyx compiled with -march=x86-64-v4 (see meson.build); chosen at
# import by effai_fast.distill.losses when the CPU supports that level.

include "_kd_impl.pxi"
