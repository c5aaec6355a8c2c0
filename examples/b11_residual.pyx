# cython: language_level=3, boundscheck=False, wraparound=False
"""The B.1.1 plugin's residual and Jacobian in Cython (see ``b11_plugin.py``): C
functions ``void f(const double* x, const double* data, double* out) noexcept nogil``
whose addresses ``fastmp.plugins.PolynomialModel.from_addresses`` takes::

    import b11_residual, b11_plugin
    res_addr, jac_addr = b11_residual.addresses("diagonal")
    model = b11_plugin.make_plugin("diagonal", addresses=(res_addr, jac_addr))

``data`` is the plugin's trial buffer: data[8:12] the student's W (row-major), data[12:14]
B, data[14:16] D, data[16:20] X (input t, sample c at 16 + 2 t + c), data[20:22] the
teacher's outputs. Only the two allocations with MP strictly between 0 and 1 are here.
"""

cdef inline void _weights(int k0, int k1, const double* x, const double* data,
                          double* w) noexcept nogil:
    cdef int i
    for i in range(4):
        w[i] = data[8 + i]
    w[k0] = x[0]
    w[k1] = x[1]


cdef inline void _residual(int k0, int k1, const double* x, const double* data,
                           double* out) noexcept nogil:
    cdef double w[4]
    cdef double p = data[12], q = data[13], u = data[14], v = data[15], a0, a1
    cdef int c
    _weights(k0, k1, x, data, w)
    for c in range(2):
        a0 = (w[0] * p + w[1] * q) * data[16 + c] + p * data[18 + c]
        a1 = (w[2] * p + w[3] * q) * data[16 + c] + q * data[18 + c]
        out[c] = (u * w[0] + v * w[2]) * a0 + (u * w[1] + v * w[3]) * a1 - data[20 + c]


cdef inline void _jacobian(int k0, int k1, const double* x, const double* data,
                           double* out) noexcept nogil:
    # dy_c / dW_ij = D_i a_j + (D W)_i B_j X_1c,  a = W B X_1c + B X_2c; out row-major 2x2
    cdef double w[4]
    cdef const double* B = data + 12
    cdef const double* D = data + 14
    cdef int c, col, k, i, j
    cdef double a_j, dw_i
    _weights(k0, k1, x, data, w)
    for c in range(2):
        for col in range(2):
            k = k0 if col == 0 else k1
            i = k // 2
            j = k % 2
            a_j = (w[2 * j] * B[0] + w[2 * j + 1] * B[1]) * data[16 + c] + B[j] * data[18 + c]
            dw_i = D[0] * w[i] + D[1] * w[2 + i]
            out[2 * c + col] = D[i] * a_j + dw_i * B[j] * data[16 + c]


cdef void residual_diagonal(const double* x, const double* data, double* out) noexcept nogil:
    _residual(0, 3, x, data, out)


cdef void jacobian_diagonal(const double* x, const double* data, double* out) noexcept nogil:
    _jacobian(0, 3, x, data, out)


cdef void residual_off_diagonal(const double* x, const double* data, double* out) noexcept nogil:
    _residual(1, 2, x, data, out)


cdef void jacobian_off_diagonal(const double* x, const double* data, double* out) noexcept nogil:
    _jacobian(1, 2, x, data, out)


def addresses(allocation):
    """``(residual address, jacobian address)`` of the C functions for ``allocation``."""
    if allocation == "diagonal":
        return <size_t>&residual_diagonal, <size_t>&jacobian_diagonal
    if allocation == "off_diagonal":
        return <size_t>&residual_off_diagonal, <size_t>&jacobian_off_diagonal
    raise ValueError(f"b11_residual: no C functions for allocation {allocation!r}")
