// The fused region normalisation kernels of the style networks (see fused_norm.py, which
// builds this file with torch's extension builder on first use).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) {
  uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Sums over one image, x [1,C,H,W] with unit channel stride: per channel sum(x), sum(x^2),
// and for each of the R planar masks m [R,H,W] (fp32) sum(m x), sum(m x^2) and sum(m).
// Each row is summed in fp32, rows are added in fp64.
// CC is the channel count when known at compile time (full unrolling and vectorisation),
// 0 for any other count.
template <typename T, int CC>
void moments_kernel(const T* x, int64_t H, int64_t W, int64_t channels, int64_t sh,
                    int64_t sw, const float* m, int64_t R, double* out) {
  const int64_t C = CC > 0 ? CC : channels;
  const int64_t width = (1 + R) * 2 * C + R;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), H));
  std::vector<double> partial(chunks * width, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(width);
    for (int64_t k = begin; k < end; ++k) {
      double* total = partial.data() + k * width;
      for (int64_t h = H * k / chunks; h < H * (k + 1) / chunks; ++h) {
        std::fill(row.begin(), row.end(), 0.0f);
        float* s1 = row.data();
        float* s2 = s1 + C;
        for (int64_t w = 0; w < W; ++w) {
          const T* px = x + h * sh + w * sw;
          for (int64_t c = 0; c < C; ++c) {
            const float v = to_float(px[c]);
            s1[c] += v;
            s2[c] += v * v;
          }
          for (int64_t r = 0; r < R; ++r) {
            const float mr = m[(r * H + h) * W + w];
            if (mr == 0.0f) continue;
            float* r1 = s1 + (1 + r) * 2 * C;
            float* r2 = r1 + C;
            for (int64_t c = 0; c < C; ++c) {
              const float v = to_float(px[c]);
              r1[c] += mr * v;
              r2[c] += mr * v * v;
            }
            row[(1 + R) * 2 * C + r] += mr;
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

// One row of W*C values, flat, so the loop vectorises whatever the channel count.
template <typename T, bool RELU, bool RES>
inline void apply_row(const T* __restrict__ x, const float* __restrict__ s,
                      const float* __restrict__ t, const T* __restrict__ res,
                      T* __restrict__ y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = to_float(x[i]) * s[i] + t[i];
    if (RELU) v = v > 0.0f ? v : 0.0f;
    if (RES) v += to_float(res[i]);
    store_one(y, i, v);
  }
}

// The masked blend of the regions' rows for pixel (h, w) into s and t (C values each).
// Returns false, leaving s and t alone, where every mask but the base's is 0.
inline bool blend_pixel(const float* m, int64_t R, int64_t H, int64_t W, int64_t h, int64_t w,
                        const float* scale, const float* shift, float* __restrict__ s,
                        float* __restrict__ t, int64_t C) {
  bool any = false;
  for (int64_t r = 0; r < R; ++r) {
    const float mr = m[(r * H + h) * W + w];
    if (mr == 0.0f) continue;
    if (!any) {
      for (int64_t c = 0; c < C; ++c) {
        s[c] = scale[c];
        t[c] = shift[c];
      }
      any = true;
    }
    const float* __restrict__ sr = scale + (r + 1) * C;
    const float* __restrict__ tr = shift + (r + 1) * C;
    for (int64_t c = 0; c < C; ++c) {
      s[c] += mr * sr[c];
      t[c] += mr * tr[c];
    }
  }
  return any;
}

template <typename T, int CC, bool RELU, bool RES>
void affine_rows(const T* x, int64_t H, int64_t W, int64_t channels, int64_t sh, int64_t sw,
                 const float* m, int64_t R, const float* scale, const float* shift,
                 const T* res, int64_t rh, int64_t rw, T* y, int64_t pad) {
  const int64_t C = CC > 0 ? CC : channels;
  const int64_t out_w = W + 2 * pad;
  at::parallel_for(0, H, 1, [&](int64_t begin, int64_t end) {
    if (CC >= 8) {
      // Wide pixels: each pixel's scale and shift stay in registers.
      float s[CC >= 8 ? CC : 1], t[CC >= 8 ? CC : 1];
      for (int64_t h = begin; h < end; ++h) {
        const T* xrow = x + h * sh;
        const T* rrow = RES ? res + h * rh : nullptr;
        T* yrow = y + ((h + pad) * out_w + pad) * C;
        for (int64_t w = 0; w < W; ++w) {
          const bool blended = R > 0 && blend_pixel(m, R, H, W, h, w, scale, shift, s, t, C);
          apply_row<T, RELU, RES>(xrow + w * C, blended ? s : scale, blended ? t : shift,
                                  RES ? rrow + w * C : nullptr, yrow + w * C, C);
        }
      }
      return;
    }
    // Narrow pixels: a row's scales and shifts first, then one flat loop over the row, so
    // the arithmetic vectorises across pixels.
    std::vector<float> srow(W * C), trow(W * C);
    std::vector<char> blended(W, 1);
    for (int64_t h = begin; h < end; ++h) {
      for (int64_t w = 0; w < W; ++w) {
        float* s = srow.data() + w * C;
        float* t = trow.data() + w * C;
        if (R > 0 && blend_pixel(m, R, H, W, h, w, scale, shift, s, t, C)) {
          blended[w] = 1;
        } else if (blended[w]) {
          for (int64_t c = 0; c < C; ++c) {
            s[c] = scale[c];
            t[c] = shift[c];
          }
          blended[w] = 0;
        }
      }
      apply_row<T, RELU, RES>(x + h * sh, srow.data(), trow.data(), RES ? res + h * rh : nullptr,
                              y + ((h + pad) * out_w + pad) * C, W * C);
    }
  });
}

// y = x * scale(p) + shift(p) with scale(p) = scale[0] + sum_r m_r(p) scale[r + 1] for the R
// planar masks (likewise shift): the base region's row plus each other region's difference
// from it, weighted by its mask. Then ReLU, then + residual; written into the interior of
// y, which is padded by `pad` on every side (filled by pad_borders).
template <typename T, int CC>
void affine_kernel(const T* x, int64_t H, int64_t W, int64_t channels, int64_t sh, int64_t sw,
                   const float* m, int64_t R, const float* scale, const float* shift,
                   const T* res, int64_t rh, int64_t rw, bool relu, T* y, int64_t pad) {
  // The flags become template arguments, so the per-channel loop has no branches.
  auto run = [&](auto relu_flag, auto res_flag) {
    affine_rows<T, CC, decltype(relu_flag)::value, decltype(res_flag)::value>(
        x, H, W, channels, sh, sw, m, R, scale, shift, res, rh, rw, y, pad);
  };
  using yes = std::true_type;
  using no = std::false_type;
  if (relu && res) run(yes{}, yes{});
  else if (relu) run(yes{}, no{});
  else if (res) run(no{}, yes{});
  else run(no{}, no{});
}

// Fill the border of a channels-last [H+2p, W+2p, C] buffer from its interior: reflect
// (mirror without repeating the edge) or replicate.
template <typename T>
void pad_borders(T* y, int64_t H, int64_t W, int64_t C, int64_t pad, bool reflect) {
  if (pad == 0) return;
  const int64_t out_w = W + 2 * pad;
  at::parallel_for(pad, H + pad, 16, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      T* row = y + h * out_w * C;
      for (int64_t j = 0; j < pad; ++j) {
        const int64_t left = reflect ? 2 * pad - j : pad;
        const int64_t right_dst = W + pad + j;
        const int64_t right = reflect ? W + pad - 2 - j : W + pad - 1;
        std::copy(row + left * C, row + (left + 1) * C, row + j * C);
        std::copy(row + right * C, row + (right + 1) * C, row + right_dst * C);
      }
    }
  });
  const int64_t row_len = out_w * C;
  for (int64_t j = 0; j < pad; ++j) {
    const int64_t top = reflect ? 2 * pad - j : pad;
    const int64_t bottom_dst = H + pad + j;
    const int64_t bottom = reflect ? H + pad - 2 - j : H + pad - 1;
    std::copy(y + top * row_len, y + (top + 1) * row_len, y + j * row_len);
    std::copy(y + bottom * row_len, y + (bottom + 1) * row_len, y + bottom_dst * row_len);
  }
}

// Calls f.template operator()<CC>() with CC the channel count if it is a common one, else 0.
template <typename F>
void dispatch_channels(int64_t C, F&& f) {
  switch (C) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    default: f(std::integral_constant<int, 0>{});
  }
}

void check_image(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1, "expected one image [1,C,H,W]");
  TORCH_CHECK(x.stride(1) == 1 && x.stride(3) == x.size(1),
              "expected channels_last rows (channels innermost, pixels contiguous)");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "expected float32 or bfloat16");
}

}  // namespace

torch::Tensor region_moments(torch::Tensor x, torch::Tensor masks) {
  check_image(x);
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t R = masks.numel() ? masks.size(1) : 0;
  if (R) TORCH_CHECK(masks.is_contiguous() && masks.scalar_type() == at::kFloat &&
                     masks.size(2) == H && masks.size(3) == W, "masks must be fp32 [1,R,H,W]");
  auto out = torch::empty({(1 + R) * 2 * C + R}, x.options().dtype(at::kDouble));
  const float* m = R ? masks.data_ptr<float>() : nullptr;
  dispatch_channels(C, [&](auto cc) {
    constexpr int CC = decltype(cc)::value;
    if (x.scalar_type() == at::kFloat)
      moments_kernel<float, CC>(x.data_ptr<float>(), H, W, C, x.stride(2), x.stride(3), m, R,
                                out.data_ptr<double>());
    else
      moments_kernel<at::BFloat16, CC>(x.data_ptr<at::BFloat16>(), H, W, C, x.stride(2),
                                       x.stride(3), m, R, out.data_ptr<double>());
  });
  return out;
}

torch::Tensor region_affine(torch::Tensor x, torch::Tensor masks, torch::Tensor scale,
                            torch::Tensor shift, torch::Tensor residual, bool relu,
                            int64_t pad, bool reflect) {
  check_image(x);
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t R = masks.numel() ? masks.size(1) : 0;
  if (R) TORCH_CHECK(masks.is_contiguous() && masks.scalar_type() == at::kFloat &&
                     masks.size(2) == H && masks.size(3) == W, "masks must be fp32 [1,R,H,W]");
  TORCH_CHECK(scale.is_contiguous() && shift.is_contiguous() &&
              scale.scalar_type() == at::kFloat && shift.scalar_type() == at::kFloat &&
              scale.numel() == (R + 1) * C && shift.numel() == scale.numel(),
              "scale and shift must be fp32 [R+1, C]");
  const bool has_res = residual.numel() > 0;
  if (has_res) {
    check_image(residual);
    TORCH_CHECK(residual.scalar_type() == x.scalar_type() && residual.size(1) == C &&
                residual.size(2) == H && residual.size(3) == W, "residual must match x");
  }
  auto y = torch::empty({1, C, H + 2 * pad, W + 2 * pad},
                        x.options().memory_format(at::MemoryFormat::ChannelsLast));
  TORCH_CHECK(C <= 64, "at most 64 channels");
  const float* m = R ? masks.data_ptr<float>() : nullptr;
  dispatch_channels(C, [&](auto cc) {
  constexpr int CC = decltype(cc)::value;
  if (x.scalar_type() == at::kFloat) {
    affine_kernel<float, CC>(x.data_ptr<float>(), H, W, C, x.stride(2), x.stride(3), m, R,
                  scale.data_ptr<float>(), shift.data_ptr<float>(),
                  has_res ? residual.data_ptr<float>() : nullptr,
                  has_res ? residual.stride(2) : 0, has_res ? residual.stride(3) : 0, relu,
                  y.data_ptr<float>(), pad);
    pad_borders(y.data_ptr<float>(), H, W, C, pad, reflect);
  } else {
    using B = at::BFloat16;
    affine_kernel<B, CC>(x.data_ptr<B>(), H, W, C, x.stride(2), x.stride(3), m, R,
                  scale.data_ptr<float>(), shift.data_ptr<float>(),
                  has_res ? residual.data_ptr<B>() : nullptr,
                  has_res ? residual.stride(2) : 0, has_res ? residual.stride(3) : 0, relu,
                  y.data_ptr<B>(), pad);
    pad_borders(y.data_ptr<B>(), H, W, C, pad, reflect);
  }
  });
  return y;
}

// The whole layer in one call: region_moments, the statistics (multistyle.region_statistics:
// each region's moments pooled with `prior` pixels of the image's, the base region's sums
// being the image's minus the others'), the scale and shift rows, then region_affine.
// `masks` are the R-1 masks of every region but `base`; gamma and beta are [R, C].
torch::Tensor region_norm(torch::Tensor x, torch::Tensor masks, torch::Tensor gamma,
                          torch::Tensor beta, int64_t base, double eps, double prior,
                          torch::Tensor residual, bool relu, int64_t pad, bool reflect) {
  check_image(x);
  const int64_t C = x.size(1);
  const int64_t K = masks.numel() ? masks.size(1) : 0;  // regions besides the base
  const int64_t R = K + 1;
  TORCH_CHECK(gamma.scalar_type() == at::kFloat && beta.scalar_type() == at::kFloat &&
              gamma.is_contiguous() && beta.is_contiguous() && gamma.numel() == R * C &&
              beta.numel() == R * C, "gamma and beta must be fp32 [R, C]");
  TORCH_CHECK(K == 0 || (base >= 0 && base < R), "base must index a region");
  if (K == 0) base = 0;
  const double* sums = nullptr;
  torch::Tensor moments = region_moments(x, masks);
  sums = moments.data_ptr<double>();
  const double pixels = static_cast<double>(x.size(2) * x.size(3));
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
  return region_affine(x, masks, scale, shift, residual, relu, pad, reflect);
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
