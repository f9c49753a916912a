#ifndef CAFFE_UTIL_STEP_GEMM_HPP_
#define CAFFE_UTIL_STEP_GEMM_HPP_

namespace caffe {

/**
 * @brief A float GEMM for many small products against one fixed factor:
 *        C (m x n) = [A1 A2] P (+ C), P packed once by PackStepFactor.
 *
 * The ReNet layer's recurrence multiplies every step's hidden states by
 * the same U; a BLAS packs U again at every call, which costs as much as
 * the product for the few rows of one step. Here P is packed once, in
 * panels of kStepPanel columns (rows of P one after the other in each
 * panel, zeros past n), and StepGemm runs an AVX-512 kernel over it:
 * blocks of up to 8 rows of C times one panel of 16 or 32 columns, in
 * registers, over all k.
 *
 * The kernel exists on x86-64 with GCC and runs where the CPU has
 * AVX-512F (StepGemmUsable()); elsewhere callers use the BLAS.
 */

/// Columns per panel of a packed factor.
const int kStepPanel = 32;

/// Width of the panel that starts at column c0 of n: kStepPanel, or 16 for
/// a last panel of 16 or fewer columns.
inline int StepPanelWidth(int c0, int n) {
  return n - c0 > 16 ? kStepPanel : 16;
}

/// Floats that a packed k x n factor takes.
int PackedStepSize(int k, int n);

/**
 * @brief Packs rows [r0, r0 + kr) of a factor P with kp rows and n columns,
 *        P[r0 + kk][c] = src[kk rs + c cs], into dst (PackedStepSize(kp, n)
 *        floats): the panel of columns [c0, c0 + w) holds P[r][c0 + c] at
 *        c0 kp + r w + c, zeros past n. Rows of P can be packed in several
 *        calls, from different sources (say U^T above W^T).
 */
void PackStepFactor(int kp, int r0, int kr, int n, const float* src, int rs,
    int cs, float* dst);

/// The operands of one product, C (m x n) = [A1 A2] P (+ C): A1 (m x k1,
/// rows lda1 apart) and A2 (m x k2; NULL when k2 = 0) against rows
/// [p0, p0 + k1 + k2) of P, packed with kp rows (ldc of C is n).
struct StepOperands {
  int m, n, kp, p0;
  const float* P;
  const float* A1;
  int lda1, k1;
  const float* A2;
  int lda2, k2;
  bool accumulate;  ///< C += the product, else C = the product
  float* C;
};

/// Whether StepGemm can run here: built for x86-64 by GCC, on a CPU with
/// AVX-512F.
bool StepGemmUsable();

/// C = [A1 A2] P (+ C); only where StepGemmUsable().
void StepGemm(const StepOperands& o);

}  // namespace caffe

#endif  // CAFFE_UTIL_STEP_GEMM_HPP_
