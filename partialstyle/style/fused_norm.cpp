// The fused region normalisation kernels of the style networks (see fused_norm.py, which
// builds this file with torch's extension builder on first use).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>

namespace {

inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) {
  uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Layout of the kernels' input x: the conv output z [1,K,Hz,Wz] with channels innermost. With
// `ph` = 1 it is the image itself (K = C channels). With `ph` = 2 it is a subpixel conv's output
// before pixel_shuffle (K = 4C): logical pixel (2hz + i, 2wz + j) has channel c at z channel
// 4c + 2i + j, so the kernels read the upsampled image without it ever being written.
// Flat rows of z are processed with period P (a multiple of K and of 16 floats, one AVX-512
// vector), lane j holding z channel j % K, so the loops vectorise for any channel count.
template <int KK>
constexpr int period() { return KK > 0 ? std::lcm(KK, 16) : 0; }

// Whether any mask but the base's is nonzero in row h.
inline bool row_touched(const float* m, int64_t R, int64_t H, int64_t W, int64_t h) {
  for (int64_t r = 0; r < R; ++r) {
    const float* row = m + (r * H + h) * W;
    if (std::any_of(row, row + W, [](float v) { return v != 0.0f; })) return true;
  }
  return false;
}

// One mask plane's values for z row hz laid out like the row itself (each value's own
// pixel's mask), so masked sums and blends run as flat loops too.
template <int PH>
inline void expand_mask(const float* plane, int64_t W, int64_t hz, int64_t Wz, int64_t K,
                        int64_t C, float* out) {
  constexpr int64_t phases = PH * PH;
  if constexpr (PH == 1) {
    const float* row = plane + hz * W;
    for (int64_t w = 0; w < W; ++w) std::fill(out + w * K, out + (w + 1) * K, row[w]);
    return;
  }
  for (int64_t i = 0; i < PH; ++i) {
    const float* row = plane + (hz * PH + i) * W;
    for (int64_t wz = 0; wz < Wz; ++wz)
      for (int64_t j = 0; j < PH; ++j) {
        const float v = row[wz * PH + j];
        float* o = out + wz * K + i * PH + j;
        for (int64_t c = 0; c < C; ++c) o[c * phases] = v;
      }
  }
}

// Sums over one image: per channel sum(x), sum(x^2), and for each of the R planar masks
// m [R,H,W] (fp32, logical size) sum(m x), sum(m x^2) and sum(m). Each z row is summed in
// fp32, rows are added in fp64. KK is the z channel count when known at compile time.
template <typename T, int KK, int PH>
void moments_kernel(const T* x, int64_t Hz, int64_t Wz, int64_t channels, int64_t sh,
                    const float* m, int64_t R, double* out) {
  constexpr int P = period<KK>(), ph = PH, phases = PH * PH;
  const int64_t K = KK > 0 ? KK : channels, C = K / phases;
  const int64_t H = Hz * ph, W = Wz * ph;
  const int64_t width = (1 + R) * 2 * C + R;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), Hz));
  std::vector<double> partial(chunks * width, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(width), mexp;
    for (int64_t k = begin; k < end; ++k) {
      double* total = partial.data() + k * width;
      for (int64_t hz = Hz * k / chunks; hz < Hz * (k + 1) / chunks; ++hz) {
        std::fill(row.begin(), row.end(), 0.0f);
        const T* xrow = x + hz * sh;
        if constexpr (P > 0) {
          float a[P] = {}, b[P] = {};
          const int64_t n = Wz * K, whole = n - n % P;
          for (int64_t i = 0; i < whole; i += P)
            for (int j = 0; j < P; ++j) {
              const float v = to_float(xrow[i + j]);
              a[j] += v;
              b[j] += v * v;
            }
          for (int64_t i = whole; i < n; ++i) {
            const float v = to_float(xrow[i]);
            a[i - whole] += v;
            b[i - whole] += v * v;
          }
          for (int j = 0; j < P; ++j) {
            row[(j % K) / phases] += a[j];
            row[C + (j % K) / phases] += b[j];
          }
        } else {
          for (int64_t i = 0; i < Wz * K; ++i) {
            const float v = to_float(xrow[i]);
            row[(i % K) / phases] += v;
            row[C + (i % K) / phases] += v * v;
          }
        }
        bool touched = false;
        for (int64_t i = 0; R > 0 && i < ph; ++i) touched |= row_touched(m, R, H, W, hz * ph + i);
        if (touched) {
          // Each value weighted by its own pixel's mask, as flat loops.
          mexp.resize(Wz * K);
          for (int64_t r = 0; r < R; ++r) {
            expand_mask<PH>(m + r * H * W, W, hz, Wz, K, C, mexp.data());
            float* r1 = row.data() + (1 + r) * 2 * C;
            float* r2 = r1 + C;
            const int64_t n = Wz * K, p = P > 0 ? P : K, whole = n - n % p;
            constexpr int64_t lanes = P > 0 ? P : 1024;  // K = C * phases <= 1024
            float a[lanes] = {}, b[lanes] = {};
            const float* __restrict__ mk = mexp.data();
            for (int64_t i = 0; i < whole; i += p)
              for (int64_t j = 0; j < p; ++j) {
                const float v = to_float(xrow[i + j]), mv = mk[i + j] * v;
                a[j] += mv;
                b[j] += mv * v;
              }
            for (int64_t i = whole; i < n; ++i) {
              const float v = to_float(xrow[i]), mv = mk[i] * v;
              a[i - whole] += mv;
              b[i - whole] += mv * v;
            }
            for (int64_t j = 0; j < p; ++j) {
              r1[(j % K) / phases] += a[j];
              r2[(j % K) / phases] += b[j];
            }
            for (int64_t i = 0; i < ph; ++i) {
              const float* plane_row = m + (r * H + hz * ph + i) * W;
              row[(1 + R) * 2 * C + r] += std::accumulate(plane_row, plane_row + W, 0.0f);
            }
          }
        }
        for (int64_t i = 0; i < width; ++i) total[i] += row[i];
      }
    }
  });
  std::fill(out, out + width, 0.0);
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t i = 0; i < width; ++i) out[i] += partial[k * width + i];
}

inline void store_one(float* out, int64_t i, float v) { out[i] = v; }
inline void store_one(at::BFloat16* out, int64_t i, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even (never NaN here)
  reinterpret_cast<uint16_t*>(out)[i] = static_cast<uint16_t>(bits >> 16);
}

// Where channel c of the padded image's pixel (hp, wp) lives in the output: channels-last rows
// (block 1), or their space-to-depth by 2 in pixel_unshuffle's channel order (block 2), the
// input a blocked conv wants, written without a pass of its own.
struct OutLayout {
  int64_t C, Wp, block;
  int64_t index(int64_t hp, int64_t wp, int64_t c) const {
    if (block == 1) return (hp * Wp + wp) * C + c;
    return ((hp >> 1) * (Wp >> 1) + (wp >> 1)) * 4 * C + c * 4 + (hp & 1) * 2 + (wp & 1);
  }
  int64_t stride() const { return block == 1 ? 1 : 4; }
};

// y = x * S + T over a flat row, S and T repeating with period p, then ReLU, then + res.
template <int P, bool RELU, bool RES, typename T, typename O>
inline void flat_affine(const T* __restrict__ x, const float* __restrict__ S,
                        const float* __restrict__ Tt, const T* __restrict__ res,
                        O* __restrict__ y, int64_t n, int64_t runtime_period) {
  const int64_t p = P > 0 ? P : runtime_period;
  int64_t i = 0;
  for (; i + p <= n; i += p)
    for (int64_t j = 0; j < p; ++j) {
      float v = to_float(x[i + j]) * S[j] + Tt[j];
      if (RELU) v = v > 0.0f ? v : 0.0f;
      if (RES) v += to_float(res[i + j]);
      store_one(y, i + j, v);
    }
  for (int64_t j = 0; i + j < n; ++j) {
    float v = to_float(x[i + j]) * S[j] + Tt[j];
    if (RELU) v = v > 0.0f ? v : 0.0f;
    if (RES) v += to_float(res[i + j]);
    store_one(y, i + j, v);
  }
}

// flat_affine with one other region: scale S + m S1 and shift T + m T1 per value, m its own
// pixel's mask (rows = {S, T, S1, T1}, each repeating with period p).
template <int P, bool RELU, bool RES, typename T, typename O>
inline void masked_affine(const T* __restrict__ x, const float* __restrict__ mk,
                          const float* const rows[4], const T* __restrict__ res,
                          O* __restrict__ y, int64_t n, int64_t runtime_period) {
  const int64_t p = P > 0 ? P : runtime_period;
  const float* __restrict__ S = rows[0];
  const float* __restrict__ Tt = rows[1];
  const float* __restrict__ S1 = rows[2];
  const float* __restrict__ T1 = rows[3];
  for (int64_t b = 0; b < n; b += p) {
    const int64_t len = std::min(p, n - b);
    const T* __restrict__ xb = x + b;
    const float* __restrict__ mb = mk + b;
    for (int64_t j = 0; j < len; ++j) {
      const float mv = mb[j];
      float v = to_float(xb[j]) * (S[j] + mv * S1[j]) + (Tt[j] + mv * T1[j]);
      if (RELU) v = v > 0.0f ? v : 0.0f;
      if (RES) v += to_float(res[b + j]);
      store_one(y, b + j, v);
    }
  }
}

// y = x * scale(p) + shift(p) with scale(p) = scale[0] + sum_r m_r(p) scale[r + 1] for the R
// planar masks (likewise shift): the base region's row plus each other region's difference
// from it, weighted by its mask. Then ReLU, then + residual (ph 1 only); written into the
// interior of y, padded by `pad` on every side (filled by pad_borders) in `layout`.
// Each z row is one flat loop (straight into y where the layouts agree, else through a
// buffer): with the base's rows repeating where no other region reaches the row, else with
// every value's own scale and shift, blended first.
template <typename T, int KK, int PH, bool RELU, bool RES>
void affine_rows(const T* x, int64_t Hz, int64_t Wz, int64_t channels, int64_t sh,
                 const float* m, int64_t R, const float* scale, const float* shift,
                 const T* res, int64_t rh, T* y, int64_t pad, OutLayout layout) {
  constexpr int P = period<KK>(), ph = PH, phases = PH * PH;
  const int64_t K = KK > 0 ? KK : channels, C = K / phases;
  const int64_t H = Hz * ph, W = Wz * ph, p = P > 0 ? P : K;
  // Row r + 1 of scale and shift (region r's difference from the base) repeating along the
  // flat row, after the base's own.
  std::vector<float> S(p), Tt(p), SR(R * p), TR(R * p);
  for (int64_t j = 0; j < p; ++j) {
    S[j] = scale[(j % K) / phases];
    Tt[j] = shift[(j % K) / phases];
    for (int64_t r = 0; r < R; ++r) {
      SR[r * p + j] = scale[(r + 1) * C + (j % K) / phases];
      TR[r * p + j] = shift[(r + 1) * C + (j % K) / phases];
    }
  }
  // z's flat order is the output's: channels-last in, channels-last out; or a subpixel conv's
  // output written space-to-depth with an even pad (block (hz + pad/2, wz + pad/2) is z's).
  const bool direct = (ph == 1 && layout.block == 1) || (ph == 2 && layout.block == 2 && pad % 2 == 0);
  const int64_t ostride = layout.stride();
  at::parallel_for(0, Hz, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(direct ? 0 : Wz * K);
    std::vector<float> srow, trow, mexp;
    // A z row's results from `values` to their pixels in y, where the layouts differ.
    auto scatter = [&](int64_t hz, const float* values) {
      for (int64_t i = 0; i < ph; ++i)
        for (int64_t wz = 0; wz < Wz; ++wz)
          for (int64_t j = 0; j < ph; ++j) {
            const float* src = values + wz * K + i * ph + j;
            T* o = y + layout.index(hz * ph + i + pad, wz * ph + j + pad, 0);
            for (int64_t c = 0; c < C; ++c) store_one(o, c * ostride, src[c * phases]);
          }
    };
    for (int64_t hz = begin; hz < end; ++hz) {
      const T* xrow = x + hz * sh;
      const T* rrow = RES ? res + hz * rh : nullptr;
      bool touched = false;
      for (int64_t i = 0; R > 0 && i < ph; ++i) touched |= row_touched(m, R, H, W, hz * ph + i);
      if (touched && R == 1) {
        // One other region (a person and the background): each value's scale and shift
        // blended inside the flat loop from its own pixel's mask.
        const int64_t n = Wz * K;
        if (mexp.empty()) mexp.resize(n);
        expand_mask<PH>(m, W, hz, Wz, K, C, mexp.data());
        const float* rows[4] = {S.data(), Tt.data(), SR.data(), TR.data()};
        if (direct) {
          T* dst = y + layout.index(hz * ph + pad, pad, 0);
          masked_affine<P, RELU, RES>(xrow, mexp.data(), rows, rrow, dst, n, p);
        } else {
          masked_affine<P, RELU, false>(xrow, mexp.data(), rows, rrow, buffer.data(), n, p);
          scatter(hz, buffer.data());
        }
        continue;
      }
      if (touched) {
        // Every value's scale and shift along the z row first: the base's rows plus each
        // other region's difference weighted by the value's own pixel's mask; then one
        // flat loop.
        const int64_t n = Wz * K;
        if (srow.empty()) {
          srow.resize(n);
          trow.resize(n);
          mexp.resize(n);
        }
        for (int64_t b = 0; b < n; b += p)
          for (int64_t j = 0; j < std::min(p, n - b); ++j) {
            srow[b + j] = S[j];
            trow[b + j] = Tt[j];
          }
        for (int64_t r = 0; r < R; ++r) {
          expand_mask<PH>(m + r * H * W, W, hz, Wz, K, C, mexp.data());
          const float* sr = SR.data() + r * p;
          const float* tr = TR.data() + r * p;
          for (int64_t b = 0; b < n; b += p)
            for (int64_t j = 0; j < std::min(p, n - b); ++j) {
              srow[b + j] += mexp[b + j] * sr[j];
              trow[b + j] += mexp[b + j] * tr[j];
            }
        }
      }
      const float* row_s = touched ? srow.data() : S.data();
      const float* row_t = touched ? trow.data() : Tt.data();
      if (direct) {
        T* dst = y + layout.index(hz * ph + pad, pad, 0);
        if (touched) flat_affine<0, RELU, RES>(xrow, row_s, row_t, rrow, dst, Wz * K, Wz * K);
        else flat_affine<P, RELU, RES>(xrow, row_s, row_t, rrow, dst, Wz * K, p);
        continue;
      }
      if (touched)
        flat_affine<0, RELU, false>(xrow, row_s, row_t, rrow, buffer.data(), Wz * K, Wz * K);
      else
        flat_affine<P, RELU, false>(xrow, row_s, row_t, rrow, buffer.data(), Wz * K, p);
      scatter(hz, buffer.data());
    }
  });
}

template <typename T, int KK, int PH>
void affine_kernel(const T* x, int64_t Hz, int64_t Wz, int64_t channels, int64_t sh,
                   const float* m, int64_t R, const float* scale, const float* shift,
                   const T* res, int64_t rh, bool relu, T* y, int64_t pad, OutLayout layout) {
  // The flags become template arguments, so the per-channel loop has no branches.
  auto run = [&](auto relu_flag, auto res_flag) {
    affine_rows<T, KK, PH, decltype(relu_flag)::value, decltype(res_flag)::value>(
        x, Hz, Wz, channels, sh, m, R, scale, shift, res, rh, y, pad, layout);
  };
  using yes = std::true_type;
  using no = std::false_type;
  if (relu && res) run(yes{}, yes{});
  else if (relu) run(yes{}, no{});
  else if (res) run(no{}, yes{});
  else run(no{}, no{});
}

// Fill the border of the padded [H+2p, W+2p] image in `layout` from its interior: reflect
// (mirror without repeating the edge) or replicate. Left and right columns first, then whole
// top and bottom rows.
template <typename T>
void pad_borders(T* y, int64_t H, int64_t W, int64_t C, int64_t pad, bool reflect,
                 OutLayout layout) {
  if (pad == 0) return;
  auto source = [&](int64_t q, int64_t n) {  // padded coordinate -> the one it copies
    int64_t v = q - pad;
    if (v < 0) v = reflect ? -v : 0;
    else if (v >= n) v = reflect ? 2 * (n - 1) - v : n - 1;
    return v + pad;
  };
  const int64_t stride = layout.stride(), Wp = W + 2 * pad;
  auto copy = [&](int64_t hp, int64_t wp, int64_t from_h, int64_t from_w) {
    const T* src = y + layout.index(from_h, from_w, 0);
    T* dst = y + layout.index(hp, wp, 0);
    for (int64_t c = 0; c < C; ++c) dst[c * stride] = src[c * stride];
  };
  at::parallel_for(pad, H + pad, 16, [&](int64_t begin, int64_t end) {
    for (int64_t hp = begin; hp < end; ++hp)
      for (int64_t j = 0; j < pad; ++j) {
        copy(hp, j, hp, source(j, W));
        copy(hp, W + pad + j, hp, source(W + pad + j, W));
      }
  });
  for (int64_t j = 0; j < pad; ++j)
    for (const int64_t hp : {j, H + pad + j}) {
      const int64_t from = source(hp, H);
      if (layout.block == 1) {
        std::copy(y + layout.index(from, 0, 0), y + layout.index(from + 1, 0, 0),
                  y + layout.index(hp, 0, 0));
      } else {
        for (int64_t wp = 0; wp < Wp; ++wp) copy(hp, wp, from, wp);
      }
    }
}

// Calls f(integral_constant<KK>, integral_constant<PH>) with KK the z channel count if it is a
// common one, else 0, and PH the phase side `ph` (1 or 2).
template <typename F>
void dispatch_channels(int64_t K, int64_t ph, F&& f) {
  auto with_ph = [&](auto kk) {
    if (ph == 2) f(kk, std::integral_constant<int, 2>{});
    else f(kk, std::integral_constant<int, 1>{});
  };
  switch (K) {
    case 128: with_ph(std::integral_constant<int, 128>{}); break;
    case 64: with_ph(std::integral_constant<int, 64>{}); break;
    case 32: with_ph(std::integral_constant<int, 32>{}); break;
    case 16: with_ph(std::integral_constant<int, 16>{}); break;
    case 12: with_ph(std::integral_constant<int, 12>{}); break;
    case 8: with_ph(std::integral_constant<int, 8>{}); break;
    case 4: with_ph(std::integral_constant<int, 4>{}); break;
    case 3: with_ph(std::integral_constant<int, 3>{}); break;
    default: with_ph(std::integral_constant<int, 0>{});
  }
}

void check_image(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1, "expected one image [1,C,H,W]");
  TORCH_CHECK(x.stride(1) == 1 && x.stride(3) == x.size(1),
              "expected channels_last rows (channels innermost, pixels contiguous)");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "expected float32 or bfloat16");
}

// Logical size and the mask check for x read with `ph` (1, or 2 for a subpixel conv's output).
int64_t check_layout(const torch::Tensor& x, const torch::Tensor& masks, int64_t ph) {
  check_image(x);
  TORCH_CHECK(ph == 1 || ph == 2, "ph must be 1 or 2");
  TORCH_CHECK(x.size(1) % (ph * ph) == 0, "a subpixel input has 4C channels");
  const int64_t R = masks.numel() ? masks.size(1) : 0;
  if (R) TORCH_CHECK(masks.is_contiguous() && masks.scalar_type() == at::kFloat &&
                     masks.size(2) == x.size(2) * ph && masks.size(3) == x.size(3) * ph,
                     "masks must be fp32 [1,R,H,W] at the logical size");
  return R;
}

}  // namespace

torch::Tensor region_moments(torch::Tensor x, torch::Tensor masks, int64_t ph) {
  const int64_t R = check_layout(x, masks, ph);
  const int64_t K = x.size(1), C = K / (ph * ph), Hz = x.size(2), Wz = x.size(3);
  auto out = torch::empty({(1 + R) * 2 * C + R}, x.options().dtype(at::kDouble));
  const float* m = R ? masks.data_ptr<float>() : nullptr;
  dispatch_channels(K, ph, [&](auto kk, auto pp) {
    constexpr int KK = decltype(kk)::value, PH = decltype(pp)::value;
    if (x.scalar_type() == at::kFloat)
      moments_kernel<float, KK, PH>(x.data_ptr<float>(), Hz, Wz, K, x.stride(2), m, R,
                                    out.data_ptr<double>());
    else
      moments_kernel<at::BFloat16, KK, PH>(x.data_ptr<at::BFloat16>(), Hz, Wz, K, x.stride(2),
                                           m, R, out.data_ptr<double>());
  });
  return out;
}

torch::Tensor region_affine(torch::Tensor x, torch::Tensor masks, torch::Tensor scale,
                            torch::Tensor shift, torch::Tensor residual, bool relu,
                            int64_t pad, bool reflect, int64_t ph, int64_t block) {
  const int64_t R = check_layout(x, masks, ph);
  const int64_t K = x.size(1), C = K / (ph * ph), Hz = x.size(2), Wz = x.size(3);
  const int64_t H = Hz * ph, W = Wz * ph;
  TORCH_CHECK(C <= 256, "at most 256 channels");
  TORCH_CHECK(scale.is_contiguous() && shift.is_contiguous() &&
              scale.scalar_type() == at::kFloat && shift.scalar_type() == at::kFloat &&
              scale.numel() == (R + 1) * C && shift.numel() == scale.numel(),
              "scale and shift must be fp32 [R+1, C]");
  const bool has_res = residual.numel() > 0;
  if (has_res) {
    check_image(residual);
    TORCH_CHECK(ph == 1 && block == 1 && residual.scalar_type() == x.scalar_type() && residual.size(1) == C &&
                residual.size(2) == H && residual.size(3) == W, "residual must match x");
  }
  TORCH_CHECK(block == 1 || (block == 2 && (H + 2 * pad) % 2 == 0 && (W + 2 * pad) % 2 == 0),
              "block must be 1, or 2 with even padded sides");
  const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
  auto y = torch::empty({1, C * block * block, Hp / block, Wp / block},
                        x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const OutLayout layout{C, Wp, block};
  const float* m = R ? masks.data_ptr<float>() : nullptr;
  dispatch_channels(K, ph, [&](auto kk, auto pp) {
    constexpr int KK = decltype(kk)::value, PH = decltype(pp)::value;
    auto run = [&](auto* xp, auto* rp, auto* yp) {
      affine_kernel<std::remove_const_t<std::remove_pointer_t<decltype(xp)>>, KK, PH>(
          xp, Hz, Wz, K, x.stride(2), m, R, scale.data_ptr<float>(),
          shift.data_ptr<float>(), rp, has_res ? residual.stride(2) : 0, relu, yp, pad, layout);
      pad_borders(yp, H, W, C, pad, reflect, layout);
    };
    if (x.scalar_type() == at::kFloat)
      run(x.data_ptr<float>(), has_res ? residual.data_ptr<float>() : nullptr,
          y.data_ptr<float>());
    else
      run(x.data_ptr<at::BFloat16>(), has_res ? residual.data_ptr<at::BFloat16>() : nullptr,
          y.data_ptr<at::BFloat16>());
  });
  return y;
}

// The whole layer in one call: region_moments, the statistics (multistyle.region_statistics:
// each region's moments pooled with `prior` pixels of the image's, the base region's sums
// being the image's minus the others'), the scale and shift rows, then region_affine.
// `masks` are the R-1 masks of every region but `base`; gamma and beta are [R, C]. `ph` 2 reads
// x as a subpixel conv's output (see moments_kernel), `block` 2 writes the result
// space-to-depth (see OutLayout).
torch::Tensor region_norm(torch::Tensor x, torch::Tensor masks, torch::Tensor gamma,
                          torch::Tensor beta, int64_t base, double eps, double prior,
                          torch::Tensor residual, bool relu, int64_t pad, bool reflect,
                          int64_t ph, int64_t block) {
  check_layout(x, masks, ph);
  const int64_t C = x.size(1) / (ph * ph);
  const int64_t K = masks.numel() ? masks.size(1) : 0;  // regions besides the base
  const int64_t R = K + 1;
  TORCH_CHECK(gamma.scalar_type() == at::kFloat && beta.scalar_type() == at::kFloat &&
              gamma.is_contiguous() && beta.is_contiguous() && gamma.numel() == R * C &&
              beta.numel() == R * C, "gamma and beta must be fp32 [R, C]");
  TORCH_CHECK(K == 0 || (base >= 0 && base < R), "base must index a region");
  if (K == 0) base = 0;
  const double* sums = nullptr;
  torch::Tensor moments = region_moments(x, masks, ph);
  sums = moments.data_ptr<double>();
  const double pixels = static_cast<double>(x.size(2) * x.size(3) * ph * ph);
  std::vector<double> mean(R * C), var(R * C), mean_all(C), var_all(C);
  for (int64_t c = 0; c < C; ++c) {
    mean_all[c] = sums[c] / pixels;
    var_all[c] = std::max(sums[C + c] / pixels - mean_all[c] * mean_all[c], 0.0);
  }
  if (K == 0) {
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = mean_all[c];
      var[c] = var_all[c];
    }
  } else {
    // Moments about the image mean: first = sum m (x - mu), second = sum m (x - mu)^2.
    std::vector<double> area(R, 0.0), first(R * C, 0.0), second(R * C, 0.0);
    double other_area = 0.0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = k < base ? k : k + 1;
      const double a = sums[2 * C * (1 + K) + k];
      area[r] = a;
      other_area += a;
      for (int64_t c = 0; c < C; ++c) {
        const double s1 = sums[2 * C * (1 + k) + c], s2 = sums[2 * C * (1 + k) + C + c];
        const double mu = mean_all[c];
        first[r * C + c] = s1 - a * mu;
        second[r * C + c] = s2 - 2.0 * mu * s1 + a * mu * mu;
        first[base * C + c] -= first[r * C + c];
        second[base * C + c] -= second[r * C + c];
      }
    }
    area[base] = pixels - other_area;
    for (int64_t c = 0; c < C; ++c) second[base * C + c] += pixels * var_all[c];
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const double weight = area[r] + prior;
        const double offset = first[r * C + c] / weight;
        const double v = (second[r * C + c] + prior * var_all[c]) / weight - offset * offset;
        mean[r * C + c] = mean_all[c] + offset;
        var[r * C + c] = std::max(v, 0.0);
      }
  }
  // Rows for region_affine: the base's scale and shift, then each other's difference.
  auto options = gamma.options();
  torch::Tensor scale = torch::empty({R, C}, options), shift = torch::empty({R, C}, options);
  const float* g = gamma.data_ptr<float>();
  const float* b = beta.data_ptr<float>();
  float* sc = scale.data_ptr<float>();
  float* sh = shift.data_ptr<float>();
  std::vector<float> row_scale(R * C), row_shift(R * C);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double s = g[r * C + c] / std::sqrt(var[r * C + c] + eps);
      row_scale[r * C + c] = static_cast<float>(s);
      row_shift[r * C + c] = static_cast<float>(b[r * C + c] - mean[r * C + c] * s);
    }
  for (int64_t c = 0; c < C; ++c) {
    sc[c] = row_scale[base * C + c];
    sh[c] = row_shift[base * C + c];
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t r = k < base ? k : k + 1;
    for (int64_t c = 0; c < C; ++c) {
      sc[(k + 1) * C + c] = row_scale[r * C + c] - row_scale[base * C + c];
      sh[(k + 1) * C + c] = row_shift[r * C + c] - row_shift[base * C + c];
    }
  }
  return region_affine(x, masks, scale, shift, residual, relu, pad, reflect, ph, block);
}

// Region masks [1,R,H,W] (fp32, H and W multiples of 4) -> the base region (the largest)
// and the other regions' masks at full, 1/2 and 1/4 size (2x2 means, as avg_pool2d), all
// in one parallel pass: each torch op on a full-size mask would be a parallel region of its
// own, and on a busy machine every one of them waits for all threads to be scheduled.
std::vector<torch::Tensor> mask_pyramid(torch::Tensor masks) {
  TORCH_CHECK(masks.dim() == 4 && masks.size(0) == 1 && masks.is_contiguous() &&
              masks.scalar_type() == at::kFloat && masks.size(2) % 4 == 0 &&
              masks.size(3) % 4 == 0, "masks must be fp32 [1,R,H,W], sides multiples of 4");
  const int64_t R = masks.size(1), H = masks.size(2), W = masks.size(3), K = R - 1;
  const float* m = masks.data_ptr<float>();
  std::vector<double> area(R, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    double total = 0.0;
    for (int64_t i = 0; i < H * W; ++i) total += m[r * H * W + i];
    area[r] = total;
  }
  const int64_t base = std::max_element(area.begin(), area.end()) - area.begin();
  auto options = masks.options();
  auto full = torch::empty({1, K, H, W}, options);
  auto half = torch::empty({1, K, H / 2, W / 2}, options);
  auto quarter = torch::empty({1, K, H / 4, W / 4}, options);
  float* f = full.data_ptr<float>();
  float* h2 = half.data_ptr<float>();
  float* q4 = quarter.data_ptr<float>();
  const int64_t W2 = W / 2, W4 = W / 4, H2 = H / 2, H4 = H / 4;
  at::parallel_for(0, K * H4, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t k = job / H4, qy = job % H4;
      const int64_t r = k < base ? k : k + 1;
      const float* src = m + r * H * W;
      std::copy(src + 4 * qy * W, src + (4 * qy + 4) * W, f + k * H * W + 4 * qy * W);
      for (int64_t hy = 2 * qy; hy < 2 * qy + 2; ++hy)
        for (int64_t x = 0; x < W2; ++x) {
          const float* top = src + 2 * hy * W + 2 * x;
          h2[(k * H2 + hy) * W2 + x] = (top[0] + top[1] + top[W] + top[W + 1]) / 4.0f;
        }
      for (int64_t x = 0; x < W4; ++x) {
        const float* top = h2 + (k * H2 + 2 * qy) * W2 + 2 * x;
        q4[(k * H4 + qy) * W4 + x] = (top[0] + top[1] + top[W2] + top[W2 + 1]) / 4.0f;
      }
    }
  });
  return {torch::tensor(base), full, half, quarter};
}
