/* kernels.cu - the CUDA backend's own kernels, where neither cuBLAS nor cuDNN has the op: the optimizer
 * updates of compute/optim.c (the same formulas, in the same float32 order, so a step on the GPU matches the
 * CPU's) and the residual add. Compiled by nvcc into a fatbin (sm_80, sm_90 and PTX for later GPUs) that
 * driver.c loads with the driver API; the host side launches them by name (extern "C", no mangling).
 *
 * Not for: launching (driver.c), layers cuDNN or cuBLAS run. */

extern "C" __global__ void ft_sgd(float *__restrict__ p, const float *__restrict__ g, long n, float lr, float wd) {
        long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
        if (j < n)
                p[j] -= lr * (g[j] + wd * p[j]);
}

extern "C" __global__ void ft_momentum(float *__restrict__ p, const float *__restrict__ g, float *__restrict__ b,
                                       long n, float lr, float wd, float mu, float damp, int nesterov, int first) {
        long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
        if (j >= n)
                return;
        float gj = g[j] + wd * p[j];
        float bj = first ? gj : mu * b[j] + (1.0f - damp) * gj;
        b[j] = bj;
        p[j] -= lr * (nesterov ? gj + mu * bj : bj);
}

extern "C" __global__ void ft_adam(float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m1,
                                   float *__restrict__ m2, long n, int decoupled, float step_size, float bc2_sqrt,
                                   float decay, float wd, float b1, float b2, float eps) {
        long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
        if (j >= n)
                return;
        float pj = p[j], gj = g[j];
        if (decoupled)
                pj *= decay;
        else
                gj += wd * pj;
        float mj = b1 * m1[j] + (1.0f - b1) * gj;
        float vj = b2 * m2[j] + (1.0f - b2) * gj * gj;
        m1[j] = mj;
        m2[j] = vj;
        /* __fdiv_rn / __fsqrt_rn: IEEE round-to-nearest as the CPU, whatever -use_fast_math says */
        p[j] = pj - step_size * __fdiv_rn(mj, __fsqrt_rn(vj) / bc2_sqrt + eps);
}

/* y = a + b (the residual add), and its backward is a copy of dy to both inputs (cuMemcpy) */
extern "C" __global__ void ft_add(float *__restrict__ y, const float *__restrict__ a, const float *__restrict__ b,
                                  long n) {
        long j = (long)blockIdx.x * blockDim.x + threadIdx.x;
        if (j < n)
                y[j] = a[j] + b[j];
}
