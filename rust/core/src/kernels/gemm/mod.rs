//! Single-precision matrix multiply, C = beta·C + A·B.
//!
//! PLACEHOLDER BODIES: the signatures below are the contract the rest of the
//! crate codes against; the implementation is a plain triple loop until the
//! BLIS-style driver/pack/micro-kernel lands.

/// A read-only strided matrix view: element (i, j) is
/// `data[i * row_stride + j * col_stride]`. A transpose is a view with the
/// strides swapped ([`MatRef::t`]), so `x @ Wᵀ` never copies `W`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Panics unless every element (i, j) lies inside `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(
                last < data.len(),
                "MatRef {rows}x{cols} (strides {row_stride},{col_stride}) exceeds {} elements",
                data.len()
            );
        }
        MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A dense row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    #[inline]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// C[M×N] (row-major, leading dimension `ldc`) = beta·C + A[M×K] · B[K×N].
/// `beta == 0` overwrites C without reading it (NaNs in C do not leak).
pub fn gemm(a: MatRef, b: MatRef, beta: f32, c: &mut [f32], ldc: usize) {
    assert_eq!(
        a.cols, b.rows,
        "gemm: A is {}x{} but B is {}x{}",
        a.rows, a.cols, b.rows, b.cols
    );
    check_c(a.rows, b.cols, c.len(), ldc);
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut acc = 0.0f32;
            for p in 0..a.cols {
                acc += a.at(i, p) * b.at(p, j);
            }
            let cij = &mut c[i * ldc + j];
            *cij = if beta == 0.0 { acc } else { beta * *cij + acc };
        }
    }
}

fn check_c(m: usize, n: usize, len: usize, ldc: usize) {
    assert!(ldc >= n, "gemm: ldc {ldc} < N {n}");
    if m > 0 && n > 0 {
        assert!(
            (m - 1) * ldc + n <= len,
            "gemm: C of {len} elements cannot hold {m}x{n} with ldc {ldc}"
        );
    }
}

/// B[K×N] packed once into the layout the micro-kernels read, for weights
/// that are multiplied many times (every Linear layer).
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// Placeholder layout: B row-major.
    data: Vec<f32>,
}

impl PackedB {
    /// Packs B [K×N] (any strides).
    pub fn pack(b: MatRef) -> Self {
        let mut data = Vec::with_capacity(b.rows * b.cols);
        for p in 0..b.rows {
            for j in 0..b.cols {
                data.push(b.at(p, j));
            }
        }
        PackedB {
            k: b.rows,
            n: b.cols,
            data,
        }
    }

    /// Packs B = Wᵀ for a PyTorch Linear weight W [N = out_features, K = in_features].
    pub fn from_linear_weight(w: &[f32], out_features: usize, in_features: usize) -> Self {
        Self::pack(MatRef::row_major(w, out_features, in_features).t())
    }

    /// K, the shared dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the output width.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The Linear weight W [N×K] this was packed from (for saving a model).
    pub fn unpack_linear_weight(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.n * self.k];
        for p in 0..self.k {
            for j in 0..self.n {
                w[j * self.k + p] = self.data[p * self.n + j];
            }
        }
        w
    }
}

/// C[M×N] = beta·C + A[M×K] · B, B pre-packed.
pub fn gemm_packed(a: MatRef, b: &PackedB, beta: f32, c: &mut [f32], ldc: usize) {
    assert_eq!(
        a.cols, b.k,
        "gemm_packed: A has {} columns but B has K = {}",
        a.cols, b.k
    );
    gemm(a, MatRef::row_major(&b.data, b.k, b.n), beta, c, ldc);
}
