// Per-pixel kernels of the frame passes around the networks (the frame's conversion, mask
// refinement, compositing and blending, stabilisation, the live path's warps and occlusion
// check), built into the same extension as the style networks' kernels (style/fused_norm.py
// builds both files). Each is one pass where the torch, numpy or OpenCV calls that define it
// (and that its tests compare it with) are several.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <memory>
#include <tuple>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// A premultiplied layer [4,h,w] (fp32, contiguous: colour times coverage, then coverage) ->
// its colour as uint8 h x w x 3 (colour / coverage where coverage > `defined`, else `small`'s
// own colour, [3,h,w] float in any layout) and its coverage clamped to [0, 1] (fp32 h x w).
// compose.layer_colors defines it; as torch ops it is eight passes over the frame.
std::tuple<torch::Tensor, torch::Tensor> layer_colors(torch::Tensor layer, torch::Tensor small,
                                                      double defined) {
  TORCH_CHECK(layer.dim() == 3 && layer.size(0) == 4 && layer.scalar_type() == at::kFloat,
              "layer must be fp32 [4,h,w]");
  TORCH_CHECK(small.dim() == 3 && small.size(0) == 3 && small.size(1) == layer.size(1) &&
              small.size(2) == layer.size(2) && small.scalar_type() == at::kFloat,
              "small must be fp32 [3,h,w] of the layer's size");
  layer = layer.contiguous();
  const int64_t H = layer.size(1), W = layer.size(2), plane = H * W;
  const int64_t sc = small.stride(0), sh = small.stride(1), sw = small.stride(2);
  auto color = torch::empty({H, W, 3}, layer.options().dtype(at::kByte));
  auto coverage = torch::empty({H, W}, layer.options());
  const float* in = layer.data_ptr<float>();
  const float* frame = small.data_ptr<float>();
  uint8_t* out = color.data_ptr<uint8_t>();
  float* cov = coverage.data_ptr<float>();
  const float threshold = static_cast<float>(defined);
  auto to_byte = [](float v) {  // frames.to_uint8: v * 255 + 0.5, clamped, truncated
    return static_cast<uint8_t>(std::min(std::max(v * 255.0f + 0.5f, 0.0f), 255.0f));
  };
  // Row by row in loops without branches, so that they vectorise: per pixel the coverage's
  // reciprocal and whether it is styled, then the colour interleaved into pixels as floats
  // beside the frame's own, then one flat select-and-round over the row. The bounds are
  // copied into the lambda: a uint8 store may alias anything, so a bound read through a
  // reference would be read again every step and the loops would not vectorise.
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    std::vector<float> buffer(2 * W + 3 * 3 * W);
    float* inverse = buffer.data();
    float* styled = inverse + W;
    float* value = styled + W;     // the colour, 3W interleaved
    float* chosen = value + 3 * W;  // per value: 1 where styled
    float* own = chosen + 3 * W;    // the frame's colour, 3W interleaved
    const int64_t n = 3 * W;
    for (int64_t h = begin; h < end; ++h) {
      const int64_t row = h * W;
      const float* c = in + 3 * plane + row;
      const float* r = in + row;
      const float* g = in + plane + row;
      const float* b = in + 2 * plane + row;
      // (Both sides of the select are computed, so the division is guarded against a zero.)
      int unstyled = 0;  // an integer OR, so that the loop vectorises
      for (int64_t w = 0; w < W; ++w) {
        const bool is_styled = c[w] > threshold;
        inverse[w] = 1.0f / (is_styled ? c[w] : 1.0f);
        styled[w] = is_styled ? 1.0f : 0.0f;
        unstyled |= !is_styled;
        cov[row + w] = std::min(std::max(c[w], 0.0f), 1.0f);
      }
      for (int64_t w = 0; w < W; ++w) {
        value[3 * w] = r[w] * inverse[w];
        value[3 * w + 1] = g[w] * inverse[w];
        value[3 * w + 2] = b[w] * inverse[w];
        chosen[3 * w] = chosen[3 * w + 1] = chosen[3 * w + 2] = styled[w];
      }
      uint8_t* o = out + 3 * row;
      if (!unstyled) {  // a row styled throughout (regions that fill the frame) needs no frame
        for (int64_t i = 0; i < n; ++i) o[i] = to_byte(value[i]);
        continue;
      }
      // Where nothing is styled, the frame's own colour: read as RGB pixels (the pipeline's
      // view of a frame) in place, else gathered from planes or any strides.
      const float* pixel = frame + h * sh;
      const float* frame_row = pixel;
      if (!(sw == 3 && sc == 1)) {
        for (int64_t w = 0; w < W; ++w)
          for (int64_t k = 0; k < 3; ++k) own[3 * w + k] = pixel[w * sw + k * sc];
        frame_row = own;
      }
      for (int64_t i = 0; i < n; ++i)
        o[i] = to_byte(chosen[i] > 0.5f ? value[i] : frame_row[i]);
    }
  });
  return {color, coverage};
}

// One stylized image [3,h,w] (fp32, planar, pixel-interleaved as the networks leave it, or
// any strides) and the weights it is shown with ([h,w] each, fp32, summed in order) -> the
// premultiplied layer [4,h,w]: the colour times the summed weight, then that weight.
// compose.premultiplied_layer for the usual single image, in one pass instead of a sum, a
// broadcast product and a copy.
torch::Tensor premultiplied_layer(torch::Tensor styled, std::vector<torch::Tensor> weights) {
  TORCH_CHECK(styled.dim() == 3 && styled.size(0) == 3 && styled.scalar_type() == at::kFloat,
              "styled must be fp32 [3,h,w]");
  TORCH_CHECK(!weights.empty(), "premultiplied_layer needs at least one weight");
  const int64_t H = styled.size(1), W = styled.size(2), plane = H * W;
  const std::vector<const float*> parts = weight_planes(weights, H, W);
  const int64_t sc = styled.stride(0), sh = styled.stride(1), sw = styled.stride(2);
  auto layer = torch::empty({4, H, W}, styled.options());
  const float* colour = styled.data_ptr<float>();
  float* out = layer.data_ptr<float>();
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      float* total = out + 3 * plane + h * W;
      summed_weights(parts, h, W, total);
      float* r = out + h * W;
      float* g = r + plane;
      float* b = g + plane;
      const float* c = colour + h * sh;
      if (sc == 1 && sw == 3) {  // pixels: r, g, b of one pixel side by side
        for (int64_t w = 0; w < W; ++w) {
          r[w] = c[3 * w] * total[w];
          g[w] = c[3 * w + 1] * total[w];
          b[w] = c[3 * w + 2] * total[w];
        }
      } else if (sw == 1) {  // planes
        for (int64_t w = 0; w < W; ++w) r[w] = c[w] * total[w];
        for (int64_t w = 0; w < W; ++w) g[w] = c[sc + w] * total[w];
        for (int64_t w = 0; w < W; ++w) b[w] = c[2 * sc + w] * total[w];
      } else {
        for (int64_t w = 0; w < W; ++w) {
          r[w] = c[w * sw] * total[w];
          g[w] = c[w * sw + sc] * total[w];
          b[w] = c[w * sw + 2 * sc] * total[w];
        }
      }
    }
  });
  return layer;
}

// Mean over channels of |a - b| for two images [C,h,w] (fp32, any strides) -> fp32 [h,w]: how
// much each pixel changed (stabilize.OutputStabilizer).
torch::Tensor mean_abs_change(torch::Tensor a, torch::Tensor b) {
  TORCH_CHECK(a.dim() == 3 && a.sizes() == b.sizes() && a.scalar_type() == at::kFloat &&
              b.scalar_type() == at::kFloat, "expected two fp32 images [C,h,w] of one size");
  const int64_t C = a.size(0), H = a.size(1), W = a.size(2);
  auto out = torch::empty({H, W}, a.options());
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t ac = a.stride(0), ah = a.stride(1), aw = a.stride(2);
  const int64_t bc = b.stride(0), bh = b.stride(1), bw = b.stride(2);
  at::parallel_for(0, H, 16, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const float* ra = pa + h * ah;
      const float* rb = pb + h * bh;
      float* row = o + h * W;
      if (C == 3 && ac == 1 && aw == 3 && bc == 1 && bw == 3) {  // views of RGB pixels
        for (int64_t w = 0; w < W; ++w) {
          const float* x = ra + 3 * w;
          const float* y = rb + 3 * w;
          row[w] = (std::abs(x[0] - y[0]) + std::abs(x[1] - y[1]) + std::abs(x[2] - y[2])) / 3.0f;
        }
        continue;
      }
      for (int64_t w = 0; w < W; ++w) {
        float total = 0.0f;
        for (int64_t c = 0; c < C; ++c) total += std::abs(ra[c * ac + w * aw] - rb[c * bc + w * bw]);
        row[w] = total / static_cast<float>(C);
      }
    }
  });
  return out;
}

// The stabilised layer: torch.lerp(output, previous, keep) with keep = strength * clamp(1 -
// motion / level, 0, 1) per pixel; output and previous [C,h,w] fp32, motion [h,w] fp32.
torch::Tensor steady_blend(torch::Tensor output, torch::Tensor previous, torch::Tensor motion,
                           double strength, double level) {
  TORCH_CHECK(output.dim() == 3 && output.sizes() == previous.sizes() &&
              motion.dim() == 2 && motion.size(0) == output.size(1) &&
              motion.size(1) == output.size(2) && output.scalar_type() == at::kFloat &&
              previous.scalar_type() == at::kFloat && motion.scalar_type() == at::kFloat,
              "expected fp32 layers [C,h,w] and a motion map [h,w] of their size");
  output = output.contiguous();
  previous = previous.contiguous();
  motion = motion.contiguous();
  const int64_t C = output.size(0), plane = output.size(1) * output.size(2);
  auto out = torch::empty_like(output);
  const float* start = output.data_ptr<float>();
  const float* end = previous.data_ptr<float>();
  const float* moved = motion.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const float s = static_cast<float>(strength), l = static_cast<float>(level);
  const int64_t W = output.size(2);
  at::parallel_for(0, output.size(1), 16, [&](int64_t begin, int64_t stop) {
    std::vector<float> keep(W);
    for (int64_t h = begin; h < stop; ++h) {
      const int64_t row = h * W;
      for (int64_t w = 0; w < W; ++w)
        keep[w] = s * std::min(std::max(1.0f - moved[row + w] / l, 0.0f), 1.0f);
      for (int64_t c = 0; c < C; ++c) {
        const float* a = start + c * plane + row;
        const float* b = end + c * plane + row;
        float* y = o + c * plane + row;
        for (int64_t w = 0; w < W; ++w) {
          // torch.lerp's own formula, so both give the same bits
          const float k = keep[w], d = b[w] - a[w];
          y[w] = k < 0.5f ? a[w] + k * d : b[w] - d * (1.0f - k);
        }
      }
    }
  });
  return out;
}

// Mean over a (2r+1)^2 window of each pixel of an h x w plane, zeros outside and divided by the
// in-bounds count (filters.box_filter): rows first into `rows`, then columns into `out`. Each
// loop adds one shifted row, so all of them vectorise.
static void box_mean(const float* in, float* out, float* rows, int64_t H, int64_t W, int64_t r) {
  for (int64_t h = 0; h < H; ++h) {
    const float* x = in + h * W;
    float* y = rows + h * W;
    for (int64_t w = 0; w < W; ++w) y[w] = x[w];
    for (int64_t k = 1; k <= r && k < W; ++k) {
      for (int64_t w = 0; w < W - k; ++w) y[w] += x[w + k];
      for (int64_t w = k; w < W; ++w) y[w] += x[w - k];
    }
  }
  std::vector<float> column_count(W);
  for (int64_t w = 0; w < W; ++w)
    column_count[w] = static_cast<float>(std::min(W - 1, w + r) - std::max<int64_t>(0, w - r) + 1);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t first = std::max<int64_t>(0, h - r), last = std::min(H - 1, h + r);
    const float row_count = static_cast<float>(last - first + 1);
    float* y = out + h * W;
    for (int64_t w = 0; w < W; ++w) y[w] = rows[first * W + w];
    for (int64_t k = first + 1; k <= last; ++k) {
      const float* x = rows + k * W;
      for (int64_t w = 0; w < W; ++w) y[w] += x[w];
    }
    for (int64_t w = 0; w < W; ++w) y[w] /= row_count * column_count[w];
  }
}

// Where a bilinear resize along one axis samples, per output value: the lower neighbour, the
// upper one and the upper one's weight (the lower one's is 1 - weight).
struct LinearTaps {
  std::vector<int32_t> low, high;
  std::vector<float> weight;
};

// Where a bilinear resize from `in` to `out` samples (half-pixel centres, no antialiasing, as
// F.interpolate with align_corners=False): the lower neighbour, the upper one and its weight.
static LinearTaps bilinear_taps(int64_t in, int64_t out) {
  LinearTaps taps{std::vector<int32_t>(out), std::vector<int32_t>(out), std::vector<float>(out)};
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t i = 0; i < out; ++i) {
    const float source = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.0f);
    const int64_t below = std::min(static_cast<int64_t>(source), in - 1);
    taps.low[i] = static_cast<int32_t>(below);
    taps.high[i] = static_cast<int32_t>(std::min(below + 1, in - 1));
    taps.weight[i] = source - static_cast<float>(below);
  }
  return taps;
}

// Rows scaled bilinearly to a wider row along fixed taps. With AVX-512, 16 outputs at a time
// whose sources lie within 32 values of the row (always so when scaling up) take two loads and
// two permutes instead of 32 scalar loads, which GCC leaves scalar; other blocks, and other
// CPUs, take the scalar loop.
class RowScaler {
 public:
  RowScaler(int64_t in, const LinearTaps& taps)
      : in_(in), out_(static_cast<int64_t>(taps.low.size())), low_(taps.low), high_(taps.high),
        weight_(taps.weight) {
    const int64_t blocks = (out_ + 15) / 16;
    start_.assign(blocks, -1);
    low_index_.assign(blocks * 16, 0);
    high_index_.assign(blocks * 16, 0);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t x = 16 * b, count = std::min<int64_t>(16, out_ - x);
      if (high_[x + count - 1] - low_[x] >= 32) continue;  // not one window: scalar
      start_[b] = low_[x];
      for (int64_t i = 0; i < count; ++i) {
        low_index_[16 * b + i] = low_[x + i] - low_[x];
        high_index_[16 * b + i] = high_[x + i] - low_[x];
      }
    }
  }

  void operator()(const float* row, float* out) const { (*this)(row, out, 0, out_); }

  // Only the outputs from `from` to `to` (and the rest of their blocks of 16).
  void operator()(const float* row, float* out, int64_t from, int64_t to) const {
    for (int64_t b = from / 16; b < (to + 15) / 16; ++b) {
      const int64_t x = 16 * b, count = std::min<int64_t>(16, out_ - x);
#if defined(__AVX512F__)
      if (start_[b] >= 0) {
        const int64_t start = start_[b], available = in_ - start;
        auto mask_of = [](int64_t n) {
          return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                         : static_cast<__mmask16>((1u << std::max<int64_t>(n, 0)) - 1u);
        };
        const __m512 first = _mm512_maskz_loadu_ps(mask_of(available), row + start);
        const __m512 second = available > 16
                                  ? _mm512_maskz_loadu_ps(mask_of(available - 16), row + start + 16)
                                  : _mm512_setzero_ps();
        const __m512 below = _mm512_permutex2var_ps(
            first, _mm512_loadu_si512(low_index_.data() + 16 * b), second);
        const __m512 above = _mm512_permutex2var_ps(
            first, _mm512_loadu_si512(high_index_.data() + 16 * b), second);
        const __m512 right = _mm512_maskz_loadu_ps(mask_of(count), weight_.data() + x);
        const __m512 left = _mm512_sub_ps(_mm512_set1_ps(1.0f), right);
        _mm512_mask_storeu_ps(out + x, mask_of(count),
                              _mm512_fmadd_ps(right, above, _mm512_mul_ps(left, below)));
        continue;
      }
#endif
      for (int64_t i = x; i < x + count; ++i) {
        const float right = weight_[i], left = 1.0f - right;
        out[i] = left * row[low_[i]] + right * row[high_[i]];
      }
    }
  }

 private:
  int64_t in_, out_;
  const std::vector<int32_t>& low_;
  const std::vector<int32_t>& high_;
  const std::vector<float>& weight_;
  std::vector<int64_t> start_;  // per block of 16 outputs: its first source, or -1 (scalar)
  std::vector<int32_t> low_index_, high_index_;  // per output: its sources from that start
};

// Rows of a plane blurred by a separable kernel (`taps`, 2R+1 of them, applied down the
// columns and then along the rows, edges replicated), made one output row at a time from rows
// of the unblurred plane that `make_row(y, row)` writes on demand. The unblurred rows live in a
// ring of 2R+1 of them, so the plane is never written whole: a blur after the pass that makes
// it costs no extra pass over the frame.
class RowBlur {
 public:
  RowBlur(const std::vector<float>& taps, int64_t height, int64_t width)
      : taps_(taps), radius_(static_cast<int64_t>(taps.size()) / 2), height_(height),
        width_(width), ring_(taps.size() * width), held_(taps.size(), -1),
        column_(width + 2 * radius_) {}

  template <class MakeRow>
  void operator()(int64_t y, const MakeRow& make_row, float* out) {
    const int64_t span = static_cast<int64_t>(taps_.size()), W = width_, R = radius_;
    float* sum = column_.data() + R;  // the column blur, with R values of margin each side
    for (int64_t k = 0; k < span; ++k) {
      const int64_t source = std::min(std::max<int64_t>(y + k - R, 0), height_ - 1);
      float* row = ring_.data() + (source % span) * W;
      if (held_[source % span] != source) {
        make_row(source, row);
        held_[source % span] = source;
      }
      const float tap = taps_[k];
      if (k == 0)
        for (int64_t x = 0; x < W; ++x) sum[x] = tap * row[x];
      else
        for (int64_t x = 0; x < W; ++x) sum[x] += tap * row[x];
    }
    for (int64_t x = 1; x <= R; ++x) {
      sum[-x] = sum[0];
      sum[W - 1 + x] = sum[W - 1];
    }
    for (int64_t x = 0; x < W; ++x) out[x] = taps_[0] * sum[x - R];
    for (int64_t k = 1; k < span; ++k) {
      const float tap = taps_[k];
      const float* shifted = sum + k - R;
      for (int64_t x = 0; x < W; ++x) out[x] += tap * shifted[x];
    }
  }

 private:
  const std::vector<float>& taps_;
  int64_t radius_, height_, width_;
  std::vector<float> ring_;
  std::vector<int64_t> held_;  // which row each ring slot holds (-1: none yet)
  std::vector<float> column_;
};

// He & Sun's fast guided filter with a gray guide (filters.guided_upsample): fit source ~
// slope * guide + offset in (2r+1)^2 windows of the small planes, box-average the fit, scale it
// bilinearly to the full guide's size and apply it there; with `blur` taps (filters.
// gaussian_taps; empty: none), the result blurred as filters.gaussian_blur blurs it, in the
// same pass. guide_small [h,w], source_small [C,h,w] and guide_full [H,W] fp32 -> [C,H,W]. As
// torch ops (or OpenCV calls) it is some twenty passes, most of them small but each with its
// own call.
torch::Tensor guided_upsample(torch::Tensor guide_small, torch::Tensor source_small,
                              torch::Tensor guide_full, int64_t radius, double eps,
                              torch::Tensor blur) {
  TORCH_CHECK(guide_small.dim() == 2 && source_small.dim() == 3 && guide_full.dim() == 2 &&
              source_small.size(1) == guide_small.size(0) &&
              source_small.size(2) == guide_small.size(1) &&
              guide_small.scalar_type() == at::kFloat && source_small.scalar_type() == at::kFloat &&
              guide_full.scalar_type() == at::kFloat,
              "expected fp32 guide [h,w], source [C,h,w] and full-size guide [H,W]");
  TORCH_CHECK(radius >= 1, "radius must be at least 1");
  TORCH_CHECK(blur.dim() == 1 && blur.scalar_type() == at::kFloat &&
                  (blur.numel() % 2 == 1 || blur.numel() == 0),
              "blur must be an odd number of fp32 taps, or none");
  guide_small = guide_small.contiguous();
  source_small = source_small.contiguous();
  guide_full = guide_full.contiguous();
  blur = blur.contiguous();
  const std::vector<float> taps(blur.data_ptr<float>(), blur.data_ptr<float>() + blur.numel());
  const int64_t C = source_small.size(0), h = guide_small.size(0), w = guide_small.size(1);
  const int64_t H = guide_full.size(0), W = guide_full.size(1), small = h * w;
  TORCH_CHECK(static_cast<int64_t>(taps.size()) / 2 < std::min(H, W),
              "the blur must be narrower than the image");
  const float* g = guide_small.data_ptr<float>();
  const float* G = guide_full.data_ptr<float>();
  auto out = torch::empty({C, H, W}, guide_full.options());

  // Working planes, uninitialised (each is written before it is read): seven of the small
  // size, and the fit scaled along the rows to the full width.
  std::unique_ptr<float[]> buffer(new float[7 * small + 2 * h * W]);
  float* rows = buffer.get();
  float* product = rows + small;
  float* mean_guide = product + small;
  float* mean_square = mean_guide + small;
  float* mean_source = mean_square + small;
  float* slope = mean_source + small;
  float* offset = slope + small;
  float* wide_slope = offset + small;
  float* wide_offset = wide_slope + h * W;

  // The guide's own window means, shared by every channel.
  for (int64_t i = 0; i < small; ++i) product[i] = g[i] * g[i];
  box_mean(g, mean_guide, rows, h, w, radius);
  box_mean(product, mean_square, rows, h, w, radius);
  const LinearTaps columns = bilinear_taps(w, W), lines = bilinear_taps(h, H);
  const RowScaler widen(w, columns);

  for (int64_t c = 0; c < C; ++c) {
    const float* s = source_small.data_ptr<float>() + c * small;
    for (int64_t i = 0; i < small; ++i) product[i] = g[i] * s[i];
    box_mean(s, mean_source, rows, h, w, radius);
    box_mean(product, slope, rows, h, w, radius);  // the mean of g * s
    const float regulariser = static_cast<float>(eps);
    for (int64_t i = 0; i < small; ++i) {
      const float covariance = slope[i] - mean_guide[i] * mean_source[i];
      const float variance = mean_square[i] - mean_guide[i] * mean_guide[i];
      const float a = covariance / (variance + regulariser);
      slope[i] = a;
      offset[i] = mean_source[i] - a * mean_guide[i];
    }
    // The fit averaged over the windows, into two planes this channel no longer needs.
    float* mean_slope = product;
    float* mean_offset = mean_source;
    box_mean(slope, mean_slope, rows, h, w, radius);
    box_mean(offset, mean_offset, rows, h, w, radius);
    // Scale the averaged fit along the rows once, then blend two rows per output row.
    for (int64_t y = 0; y < h; ++y) {
      widen(mean_slope + y * w, wide_slope + y * W);
      widen(mean_offset + y * w, wide_offset + y * W);
    }
    auto apply = [&](int64_t y, float* row) {
      const float below = lines.weight[y], above = 1.0f - below;  // of the high and low rows
      const float* a0 = wide_slope + lines.low[y] * W;
      const float* a1 = wide_slope + lines.high[y] * W;
      const float* b0 = wide_offset + lines.low[y] * W;
      const float* b1 = wide_offset + lines.high[y] * W;
      const float* guide = G + y * W;
      for (int64_t x = 0; x < W; ++x)
        row[x] = (above * a0[x] + below * a1[x]) * guide[x] + (above * b0[x] + below * b1[x]);
    };
    float* o = out.data_ptr<float>() + c * H * W;
    at::parallel_for(0, H, 16, [&](int64_t begin, int64_t end) {
      if (taps.empty()) {
        for (int64_t y = begin; y < end; ++y) apply(y, o + y * W);
        return;
      }
      RowBlur blurred(taps, H, W);
      for (int64_t y = begin; y < end; ++y) blurred(y, apply, o + y * W);
    });
  }
  return out;
}

// Bilinear taps from `in` to `out` values as OpenCV's own resize code places them (INTER_LINEAR
// on a float image): half-pixel centres, the position's float fraction, and edges replicated by
// giving the outside neighbour no weight. (cv2.resize, what filters.upsample_bilinear calls,
// hands float images to Intel's IPP where it is built in, whose positions differ by up to
// 1e-5; torch's, bilinear_taps', differ alike.)
static LinearTaps opencv_taps(int64_t in, int64_t out) {
  LinearTaps taps{std::vector<int32_t>(out), std::vector<int32_t>(out), std::vector<float>(out)};
  const double scale = 1.0 / (static_cast<double>(out) / static_cast<double>(in));
  for (int64_t i = 0; i < out; ++i) {
    float f = static_cast<float>((i + 0.5) * scale - 0.5);
    int64_t s = static_cast<int64_t>(std::floor(f));
    f -= static_cast<float>(s);
    if (s < 0) s = 0, f = 0.0f;
    if (s >= in - 1) s = in - 1, f = 0.0f;
    taps.low[i] = static_cast<int32_t>(s);
    taps.high[i] = static_cast<int32_t>(std::min(s + 1, in - 1));
    taps.weight[i] = f;
  }
  return taps;
}

// What mask refinement feeds its half-resolution guided filter, in one pass over the frame
// (segment/refine.py defines it): the person probability through the soft threshold
// clamp((p - threshold) / band + 0.5, 0, 1), the frame's luma (`luma` weights; small [3,H,W]
// fp32 in any layout), and both shrunk to [H/2,W/2] by 2x2 means. H and W must be even. The
// probability is [H,W], or smaller (the segmenter's own output): then it is scaled to H x W
// bilinearly on the way (opencv_taps) and never stored at that size.
// Returns (luma [H,W], luma_half, mask_half).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> refine_inputs(
    torch::Tensor probability, torch::Tensor small, double threshold, double band,
    std::vector<double> luma) {
  TORCH_CHECK(probability.dim() == 2 && probability.scalar_type() == at::kFloat &&
              probability.size(0) >= 1 && probability.size(1) >= 1 && small.dim() == 3 &&
              small.size(0) == 3 && small.scalar_type() == at::kFloat,
              "expected an fp32 probability [h,w] and frame [3,H,W]");
  TORCH_CHECK(small.size(1) % 2 == 0 && small.size(2) % 2 == 0,
              "refine_inputs needs an even height and width");
  TORCH_CHECK(luma.size() == 3, "luma must be three weights");
  probability = probability.contiguous();
  const int64_t H = small.size(1), W = small.size(2), h = H / 2, w = W / 2;
  const int64_t PH = probability.size(0), PW = probability.size(1);
  const bool scaled = PH != H || PW != W;
  const LinearTaps rows = opencv_taps(PH, scaled ? H : 0);
  const LinearTaps columns = opencv_taps(PW, scaled ? W : 0);
  const RowScaler widen(PW, columns);
  const int64_t sc = small.stride(0), sh = small.stride(1), sw = small.stride(2);
  auto gray = torch::empty({H, W}, probability.options());
  auto gray_half = torch::empty({h, w}, probability.options());
  auto mask_half = torch::empty({h, w}, probability.options());
  const float* p = probability.data_ptr<float>();
  const float* frame = small.data_ptr<float>();
  float* y = gray.data_ptr<float>();
  float* yh = gray_half.data_ptr<float>();
  float* mh = mask_half.data_ptr<float>();
  const float t = static_cast<float>(threshold), b = static_cast<float>(band);
  const float red = static_cast<float>(luma[0]), green = static_cast<float>(luma[1]),
              blue = static_cast<float>(luma[2]);
  // Row by row, each loop without branches so that it vectorises: two lines of luma and of
  // the thresholded mask, then their 2x2 means. A scaled probability's source rows are
  // scaled along x once each (OpenCV's order: across, then down) and kept while lines use them.
  at::parallel_for(0, h, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> soft(2 * W), line_values(W), across(2 * W);
    int64_t held[2] = {-1, -1};  // which source row each half of `across` holds
    auto scaled_row = [&](int64_t source) -> const float* {
      for (int k = 0; k < 2; ++k)
        if (held[k] == source) return across.data() + k * W;
      // Lines ask for rows in order, so the lower row held is one no later line needs.
      const int slot = held[0] <= held[1] ? 0 : 1;
      float* out = across.data() + slot * W;
      widen(p + source * PW, out);
      held[slot] = source;
      return out;
    };
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t k = 0; k < 2; ++k) {
        const int64_t line = 2 * row + k;
        const float* pixel = frame + line * sh;
        float* out = y + line * W;
        if (sc == 1 && sw == 3) {  // a view of RGB pixels
          for (int64_t x = 0; x < W; ++x)
            out[x] = red * pixel[3 * x] + green * pixel[3 * x + 1] + blue * pixel[3 * x + 2];
        } else {
          for (int64_t x = 0; x < W; ++x)
            out[x] = red * pixel[x * sw] + green * pixel[x * sw + sc] + blue * pixel[x * sw + 2 * sc];
        }
        const float* q = p + line * W;
        if (scaled) {
          const float* top = scaled_row(rows.low[line]);
          const float* bottom = scaled_row(rows.high[line]);
          const float down = rows.weight[line], up = 1.0f - down;
          float* v = line_values.data();
          for (int64_t x = 0; x < W; ++x) v[x] = top[x] * up + bottom[x] * down;
          q = v;
        }
        float* m = soft.data() + k * W;
        for (int64_t x = 0; x < W; ++x) m[x] = std::min(std::max((q[x] - t) / b + 0.5f, 0.0f), 1.0f);
      }
      const float* top = y + 2 * row * W;
      const float* bottom = top + W;
      const float* soft_top = soft.data();
      const float* soft_bottom = soft_top + W;
      float* gray_out = yh + row * w;
      float* mask_out = mh + row * w;
      for (int64_t x = 0; x < w; ++x) {
        gray_out[x] = (top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1]) * 0.25f;
        mask_out[x] = (soft_top[2 * x] + soft_top[2 * x + 1] + soft_bottom[2 * x] +
                       soft_bottom[2 * x + 1]) * 0.25f;
      }
    }
  });
  return {gray, gray_half, mask_half};
}

// Backward-warp maps for cv2.remap from a flow estimated at a smaller size (live/flow.py's Warp
// defines them): the flow [h,w,2] (fp32, pixels, x then y) scaled bilinearly to H x W with its
// vectors scaled alike, plus each pixel's own position, in OpenCV's fixed-point form (what
// cv2.convertMaps makes for CV_16SC2): whole pixels [H,W,2] int16 and 1/32-pixel fractions [H,W]
// uint16 (row fraction * 32 + column fraction), rounded to the nearest 1/32 as OpenCV does. As
// numpy and OpenCV calls it is a resize, two scalings, two additions and the conversion.
std::tuple<torch::Tensor, torch::Tensor> flow_maps(torch::Tensor flow, int64_t H, int64_t W) {
  TORCH_CHECK(flow.dim() == 3 && flow.size(2) == 2 && flow.scalar_type() == at::kFloat,
              "expected an fp32 flow [h,w,2]");
  TORCH_CHECK(H >= 1 && W >= 1 && H < 32768 && W < 32768, "maps must be 1 to 32767 pixels a side");
  flow = flow.contiguous();
  const int64_t h = flow.size(0), w = flow.size(1);
  const float* f = flow.data_ptr<float>();
  auto whole = torch::empty({H, W, 2}, flow.options().dtype(at::kShort));
  auto fraction = torch::empty({H, W}, flow.options().dtype(at::kShort));
  int16_t* out_whole = whole.data_ptr<int16_t>();
  uint16_t* out_fraction = reinterpret_cast<uint16_t*>(fraction.data_ptr<int16_t>());
  const LinearTaps columns = bilinear_taps(w, W), rows = bilinear_taps(h, H);
  const float scale_x = static_cast<float>(W) / static_cast<float>(w);
  const float scale_y = static_cast<float>(H) / static_cast<float>(h);
  // The flow scaled along the rows once (both components), then two rows blended per map row.
  std::unique_ptr<float[]> wide(new float[2 * h * W]);
  for (int64_t y = 0; y < h; ++y) {
    const float* row = f + 2 * y * w;
    float* u = wide.get() + 2 * y * W;
    float* v = u + W;
    for (int64_t x = 0; x < W; ++x) {
      const int32_t i = columns.low[x], j = columns.high[x];
      const float right = columns.weight[x], left = 1.0f - right;
      u[x] = left * row[2 * i] + right * row[2 * j];
      v[x] = left * row[2 * i + 1] + right * row[2 * j + 1];
    }
  }
  at::parallel_for(0, H, 16, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> ix(W), iy(W);
    for (int64_t y = begin; y < end; ++y) {
      const float below = rows.weight[y], above = 1.0f - below;  // of the high and low rows
      const float* u0 = wide.get() + 2 * rows.low[y] * W;
      const float* u1 = wide.get() + 2 * rows.high[y] * W;
      const float* v0 = u0 + W;
      const float* v1 = u1 + W;
      const float row = static_cast<float>(y);
      for (int64_t x = 0; x < W; ++x) {
        const float u = (above * u0[x] + below * u1[x]) * scale_x + static_cast<float>(x);
        const float v = (above * v0[x] + below * v1[x]) * scale_y + row;
        ix[x] = static_cast<int32_t>(std::nearbyint(u * 32.0f));
        iy[x] = static_cast<int32_t>(std::nearbyint(v * 32.0f));
      }
      int16_t* o = out_whole + 2 * y * W;
      uint16_t* q = out_fraction + y * W;
      for (int64_t x = 0; x < W; ++x) {
        o[2 * x] = static_cast<int16_t>(std::min(std::max(ix[x] >> 5, -32768), 32767));
        o[2 * x + 1] = static_cast<int16_t>(std::min(std::max(iy[x] >> 5, -32768), 32767));
        q[x] = static_cast<uint16_t>((iy[x] & 31) * 32 + (ix[x] & 31));
      }
    }
  });
  return {whole, fraction};
}

// What the two blends take: a uint8 RGB or RGBA frame, a uint8 RGB colour and an fp32
// coverage of the colour's size.
static void check_blend_inputs(const torch::Tensor& frame, const torch::Tensor& color,
                               const torch::Tensor& coverage) {
  TORCH_CHECK(frame.dim() == 3 && (frame.size(2) == 3 || frame.size(2) == 4) &&
              frame.scalar_type() == at::kByte, "frame must be uint8 [H,W,3] or [H,W,4]");
  TORCH_CHECK(color.dim() == 3 && color.size(2) == 3 && color.scalar_type() == at::kByte,
              "color must be uint8 [h,w,3]");
  TORCH_CHECK(coverage.dim() == 2 && coverage.size(0) == color.size(0) &&
              coverage.size(1) == color.size(1) && coverage.scalar_type() == at::kFloat,
              "coverage must be fp32 [h,w] of the color's size");
}

// frame * (1 - coverage) + color * coverage in uint8, rounded to nearest, in one pass
// (compose.blend_styled at the frame's own size): frame [H,W,C] uint8 (C = 3, or 4 with an
// alpha channel that is kept), color [H,W,3] uint8, coverage [H,W] fp32 clamped to [0, 1]. Where
// the coverage is 0 the frame's pixel comes out exactly as it went in. As OpenCV calls it is a
// clip, the styled box's search, a blend and a copy of the frame to paste it into.
torch::Tensor blend_pixels(torch::Tensor frame, torch::Tensor color, torch::Tensor coverage) {
  check_blend_inputs(frame, color, coverage);
  TORCH_CHECK(color.size(0) == frame.size(0) && color.size(1) == frame.size(1),
              "color and coverage must be of the frame's size");
  frame = frame.contiguous();
  color = color.contiguous();
  coverage = coverage.contiguous();
  const int64_t H = frame.size(0), W = frame.size(1), C = frame.size(2);
  auto out = torch::empty_like(frame);
  const uint8_t* f = frame.data_ptr<uint8_t>();
  const uint8_t* s = color.data_ptr<uint8_t>();
  const float* weight = coverage.data_ptr<float>();
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    std::vector<float> c(W), c3(3 * W);
    for (int64_t h = begin; h < end; ++h) {
      const int64_t row = h * W;
      for (int64_t w = 0; w < W; ++w) c[w] = std::min(std::max(weight[row + w], 0.0f), 1.0f);
      const uint8_t* frame_row = f + row * C;
      const uint8_t* color_row = s + row * 3;
      uint8_t* out_row = o + row * C;
      if (C == 3) {  // as one flat row of values, with the weights spread over each pixel's
        for (int64_t w = 0; w < W; ++w) c3[3 * w] = c3[3 * w + 1] = c3[3 * w + 2] = c[w];
        // Bounds are copied into the lambda (as in layer_colors) and this one is local.
        const int64_t n = 3 * W;
        for (int64_t i = 0; i < n; ++i) {
          const float value = static_cast<float>(color_row[i]) * c3[i] +
                              static_cast<float>(frame_row[i]) * (1.0f - c3[i]);
          out_row[i] = static_cast<uint8_t>(value + 0.5f);
        }
        continue;
      }
      for (int64_t w = 0; w < W; ++w) {
        const float styled = c[w], own = 1.0f - styled;
        for (int64_t k = 0; k < 3; ++k) {
          const float value = static_cast<float>(color_row[3 * w + k]) * styled +
                              static_cast<float>(frame_row[C * w + k]) * own;
          out_row[C * w + k] = static_cast<uint8_t>(value + 0.5f);
        }
        if (C == 4) out_row[C * w + 3] = frame_row[C * w + 3];
      }
    }
  });
  return out;
}

// Forward-backward consistency of two flows (live/carry.py's round_trip_valid defines it): the
// forward flow [h,w,2] sampled where the backward warp's fixed-point maps point (whole [h,w,2]
// int16 and 1/32 fractions [h,w], as flow_maps makes them; bilinear, edges repeated, as
// cv2.remap samples) and added to the backward flow [h,w,2]; a pixel is valid (1) where that
// round trip misses by at most `share` of the squared motion plus `pixels` squared. As numpy
// and OpenCV calls it is a remap and a dozen passes.
torch::Tensor round_trip_valid(torch::Tensor whole, torch::Tensor fraction, torch::Tensor backward,
                               torch::Tensor forward, double share, double pixels) {
  TORCH_CHECK(backward.dim() == 3 && backward.size(2) == 2 && forward.sizes() == backward.sizes() &&
              backward.scalar_type() == at::kFloat && forward.scalar_type() == at::kFloat,
              "expected two fp32 flows [h,w,2] of one size");
  TORCH_CHECK(whole.dim() == 3 && whole.size(0) == backward.size(0) &&
              whole.size(1) == backward.size(1) && whole.size(2) == 2 &&
              whole.scalar_type() == at::kShort && fraction.scalar_type() == at::kShort &&
              fraction.dim() == 2 && fraction.size(0) == whole.size(0) &&
              fraction.size(1) == whole.size(1), "expected the warp's maps at the flows' size");
  whole = whole.contiguous();
  fraction = fraction.contiguous();
  backward = backward.contiguous();
  forward = forward.contiguous();
  const int64_t H = backward.size(0), W = backward.size(1);
  auto valid = torch::empty({H, W}, backward.options().dtype(at::kBool));
  const int16_t* map = whole.data_ptr<int16_t>();
  const uint16_t* part = reinterpret_cast<const uint16_t*>(fraction.data_ptr<int16_t>());
  const float* b = backward.data_ptr<float>();
  const float* f = forward.data_ptr<float>();
  bool* out = valid.data_ptr<bool>();
  const float s = static_cast<float>(share), p2 = static_cast<float>(pixels * pixels);
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    for (int64_t y = begin; y < end; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        const int64_t i = y * W + x;
        const int64_t left = map[2 * i], top = map[2 * i + 1];
        const float fx = static_cast<float>(part[i] & 31) / 32.0f;
        const float fy = static_cast<float>(part[i] >> 5) / 32.0f;
        const int64_t x0 = std::min(std::max<int64_t>(left, 0), W - 1);
        const int64_t x1 = std::min(std::max<int64_t>(left + 1, 0), W - 1);
        const int64_t y0 = std::min(std::max<int64_t>(top, 0), H - 1);
        const int64_t y1 = std::min(std::max<int64_t>(top + 1, 0), H - 1);
        float there[2];
        for (int k = 0; k < 2; ++k) {
          const float upper = (1.0f - fx) * f[2 * (y0 * W + x0) + k] + fx * f[2 * (y0 * W + x1) + k];
          const float lower = (1.0f - fx) * f[2 * (y1 * W + x0) + k] + fx * f[2 * (y1 * W + x1) + k];
          there[k] = (1.0f - fy) * upper + fy * lower;
        }
        const float bx = b[2 * i], by = b[2 * i + 1];
        const float miss_x = bx + there[0], miss_y = by + there[1];
        const float reach = bx * bx + by * by + there[0] * there[0] + there[1] * there[1];
        out[i] = miss_x * miss_x + miss_y * miss_y <= s * reach + p2;
      }
    }
  });
  return valid;
}

// uint8 pixels [H,W,C] (C >= 3, any strides: the colour of an RGB frame, or an RGB view of an
// RGBA one) -> colour / 255 in fp32 [3,H,W], laid out as pixels (strides 1, 3W, 3), what
// frames.to_image gives bit for bit. As torch ops it is a cast and a division, two passes, and
// slow from an RGBA view.
torch::Tensor pixels_to_image(torch::Tensor rgb) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(2) >= 3 && rgb.scalar_type() == at::kByte,
              "expected uint8 pixels [H,W,C] with C >= 3");
  const int64_t H = rgb.size(0), W = rgb.size(1);
  const int64_t sh = rgb.stride(0), sw = rgb.stride(1), sc = rgb.stride(2);
  auto image = torch::empty({H, W, 3}, rgb.options().dtype(at::kFloat));
  const uint8_t* in = rgb.data_ptr<uint8_t>();
  float* out = image.data_ptr<float>();
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const uint8_t* row = in + h * sh;
      float* o = out + 3 * h * W;
      if (sc == 1 && sw == 3) {  // RGB pixels: the row is one run of values, a loop in vectors
        for (int64_t i = 0; i < 3 * W; ++i) o[i] = static_cast<float>(row[i]) / 255.0f;
      } else if (sc == 1 && sw == 4) {  // RGBA pixels
        const int64_t step = sw;
        for (int64_t w = 0; w < W; ++w)
          for (int64_t k = 0; k < 3; ++k) o[3 * w + k] = static_cast<float>(row[step * w + k]) / 255.0f;
      } else {
        for (int64_t w = 0; w < W; ++w)
          for (int64_t k = 0; k < 3; ++k)
            o[3 * w + k] = static_cast<float>(row[sw * w + sc * k]) / 255.0f;
      }
    }
  });
  return image.permute({2, 0, 1});
}

// One row of four-channel pixels blended from planes: channel k = colour_k + frame_k * share,
// rounded and clamped to a byte, the alpha byte kept. Each pixel is one 32-bit word (bytes R,
// G, B, A in memory order on a little-endian CPU), so the loop runs on whole words and
// vectorises, where spreading the planes over four float lanes a pixel did not.
static void blend_rgba_row(const uint8_t* frame, const float* share, const float* red,
                           const float* green, const float* blue, uint8_t* out, int64_t from,
                           int64_t to) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pixels as words need little-endian");
  typedef uint32_t __attribute__((may_alias, aligned(1))) word;
  const word* in = reinterpret_cast<const word*>(frame);
  word* o = reinterpret_cast<word*>(out);
  for (int64_t x = from; x < to; ++x) {
    const uint32_t pixel = in[x];
    const float keep = share[x];
    auto channel = [keep](float colour, uint32_t byte) {
      const float value = colour + static_cast<float>(byte) * keep + 0.5f;
      return static_cast<uint32_t>(std::min(std::max(value, 0.0f), 255.0f));
    };
    o[x] = channel(red[x], pixel & 0xFFu) | channel(green[x], (pixel >> 8) & 0xFFu) << 8 |
           channel(blue[x], (pixel >> 16) & 0xFFu) << 16 | (pixel & 0xFF000000u);
  }
}

// What the scaled blend lays over the frame, read per processing-size pixel: a uint8 colour
// with its coverage (the live path's, blended as colour * coverage), or a premultiplied layer
// (the pipeline's, already colour * coverage, so that it is scaled as the float path scales it).
// Each says which small pixels have coverage and blends two small rows into planes (coverage,
// then the three colour values) for the columns lo to hi.
struct ColorOverFrame {
  static constexpr bool premultiplied = false;
  const uint8_t* color;    // [h,w,3]
  const float* coverage;   // [h,w], clamped to [0, 1] before it is scaled
  bool styled(int64_t i) const { return coverage[i] > 0.0f; }
  void blend_rows(int64_t a, int64_t b, float above, float below, int64_t lo, int64_t hi,
                  int64_t w, float* planes) const {
    for (int64_t i = lo; i <= hi; ++i) {
      const float top = std::min(std::max(coverage[a * w + i], 0.0f), 1.0f);
      const float bottom = std::min(std::max(coverage[b * w + i], 0.0f), 1.0f);
      planes[i] = above * top + below * bottom;
    }
    const uint8_t* top = color + 3 * a * w;
    const uint8_t* bottom = color + 3 * b * w;
    for (int64_t k = 0; k < 3; ++k) {
      float* plane = planes + (k + 1) * w;
      for (int64_t i = lo; i <= hi; ++i)
        plane[i] = above * static_cast<float>(top[3 * i + k]) +
                   below * static_cast<float>(bottom[3 * i + k]);
    }
  }
};

struct LayerOverFrame {
  static constexpr bool premultiplied = true;
  const float* layer;  // [4,h,w]: colour * coverage, then coverage (clamped once scaled)
  int64_t plane;
  bool styled(int64_t i) const { return layer[3 * plane + i] > 0.0f; }
  void blend_rows(int64_t a, int64_t b, float above, float below, int64_t lo, int64_t hi,
                  int64_t w, float* planes) const {
    const float* top = layer + a * w;
    const float* bottom = layer + b * w;
    for (int64_t i = lo; i <= hi; ++i)
      planes[i] = above * top[3 * plane + i] + below * bottom[3 * plane + i];
    for (int64_t k = 0; k < 3; ++k) {
      const float* upper = top + k * plane;
      const float* lower = bottom + k * plane;
      float* out = planes + (k + 1) * w;
      for (int64_t i = lo; i <= hi; ++i) out[i] = 255.0f * (above * upper[i] + below * lower[i]);
    }
  }
};

// The styled content scaled up to the frame and blended onto it in one pass: the small
// [h,w] content scaled bilinearly (half-pixel centres) to the frame's [H,W], then per value
// frame * (1 - coverage) + colour * coverage (or + the premultiplied colour), rounded; an alpha
// channel is kept. Rows and columns that no coverage reaches are the frame's own bytes, copied.
template <int C, class Source>
static torch::Tensor blend_scaled_from(const torch::Tensor& frame, const Source& source,
                                       int64_t h, int64_t w) {
  const int64_t H = frame.size(0), W = frame.size(1);
  auto out = torch::empty_like(frame);
  const uint8_t* f = frame.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  const LinearTaps columns = bilinear_taps(w, W), rows = bilinear_taps(h, H);
  const RowScaler widen(w, columns);
  const std::vector<int32_t>& x0 = columns.low;
  const std::vector<int32_t>& x1 = columns.high;
  // Each small row's first and last column with some coverage (first > last: none).
  std::vector<int64_t> first(h, w), last(h, -1);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      if (source.styled(y * w + x)) {
        first[y] = std::min(first[y], x);
        last[y] = x;
      }
  at::parallel_for(0, H, 16, [=, &x0, &x1, &rows, &first, &last, &widen](int64_t begin,
                                                                          int64_t end) {
    // Per row: the two small rows blended into four planes, each scaled along the row, then
    // for RGB frames spread over three values a pixel and blended in one flat loop, for RGBA
    // frames blended a pixel (a 32-bit word, its alpha byte kept) at a time.
    std::vector<float> small_planes(4 * w), wide_planes(4 * W), keep(C * W), styled(C * W);
    for (int64_t y = begin; y < end; ++y) {
      const uint8_t* frame_row = f + y * W * C;
      uint8_t* out_row = o + y * W * C;
      const int64_t a = rows.low[y], b = rows.high[y];
      // The small columns this row's coverage comes from, one more on each side for the taps.
      const int64_t lo = std::max<int64_t>(std::min(first[a], first[b]) - 1, 0);
      const int64_t hi = std::min<int64_t>(std::max(last[a], last[b]) + 1, w - 1);
      if (lo > hi) {  // nothing styled on this row
        std::copy(frame_row, frame_row + W * C, out_row);
        continue;
      }
      const float below = rows.weight[y], above = 1.0f - below;  // the weights of rows b and a
      source.blend_rows(a, b, above, below, lo, hi, w, small_planes.data());
      // The frame columns whose taps both lie in [lo, hi]; outside it the coverage is 0.
      int64_t start = 0, stop = W;
      while (start < W && x0[start] < lo) ++start;
      while (stop > start && x1[stop - 1] > hi) --stop;
      std::copy(frame_row, frame_row + start * C, out_row);
      std::copy(frame_row + stop * C, frame_row + W * C, out_row + stop * C);
      for (int64_t p = 0; p < 4; ++p)
        widen(small_planes.data() + p * w, wide_planes.data() + p * W, start, stop);
      float* share = wide_planes.data();
      float* red = share + W;
      float* green = red + W;
      float* blue = green + W;
      if (C == 4) {  // the frame's share and the colour over it in place, then a word a pixel
        for (int64_t x = start; x < stop; ++x) {
          const float c = std::min(std::max(share[x], 0.0f), 1.0f);
          const float scale = Source::premultiplied ? 1.0f : c;
          share[x] = 1.0f - c;
          red[x] *= scale;
          green[x] *= scale;
          blue[x] *= scale;
        }
        blend_rgba_row(frame_row, share, red, green, blue, out_row, start, stop);
        continue;
      }
      float* kv = keep.data();
      float* sv = styled.data();
      for (int64_t x = start; x < stop; ++x) {
        const float c = std::min(std::max(share[x], 0.0f), 1.0f);
        const float scale = Source::premultiplied ? 1.0f : c;
        kv[C * x] = kv[C * x + 1] = kv[C * x + 2] = 1.0f - c;
        sv[C * x] = red[x] * scale;
        sv[C * x + 1] = green[x] * scale;
        sv[C * x + 2] = blue[x] * scale;
      }
      const int64_t from = start * C, to = stop * C;
      for (int64_t n = from; n < to; ++n) {
        const float value = sv[n] + static_cast<float>(frame_row[n]) * kv[n] + 0.5f;
        out_row[n] = static_cast<uint8_t>(std::min(std::max(value, 0.0f), 255.0f));
      }
    }
  });
  return out;
}

torch::Tensor blend_scaled(torch::Tensor frame, torch::Tensor color, torch::Tensor coverage) {
  check_blend_inputs(frame, color, coverage);
  frame = frame.contiguous();
  color = color.contiguous();
  coverage = coverage.contiguous();
  const ColorOverFrame source{color.data_ptr<uint8_t>(), coverage.data_ptr<float>()};
  if (frame.size(2) == 3) return blend_scaled_from<3>(frame, source, color.size(0), color.size(1));
  return blend_scaled_from<4>(frame, source, color.size(0), color.size(1));
}

// A premultiplied layer [4,h,w] (fp32: colour times coverage, then coverage) blended onto a
// uint8 RGB or RGBA frame [H,W,C] (compose.blend_layer): frame * (1 - coverage) + colour, the
// coverage clamped to [0, 1] and the layer scaled bilinearly to the frame's size first where it
// is smaller, rounded to nearest, alpha kept. It is compose.compose_frame's float blend with
// bilinear scaling, in one pass over the frame; where the coverage is 0 the frame's pixel comes
// out exactly as it went in.
// blend_layer's rows at the frame's own size: per row the frame's share and the colour (times
// 255), for RGB frames spread over three lanes a pixel and blended in one flat loop over the
// values, for RGBA frames as planes blended a pixel (a 32-bit word) at a time.
template <int C>
static void blend_layer_rows(const uint8_t* f, const float* in, uint8_t* o, int64_t H, int64_t W) {
  const int64_t plane = H * W;
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    std::vector<float> planes(4 * W), keep(C * W), styled(C * W);
    for (int64_t y = begin; y < end; ++y) {
      const float* r = in + y * W;
      const float* g = r + plane;
      const float* b = g + plane;
      const float* c = b + plane;
      const uint8_t* frame_row = f + y * W * C;
      uint8_t* out_row = o + y * W * C;
      if (C == 4) {
        float* share = planes.data();
        float* red = share + W;
        float* green = red + W;
        float* blue = green + W;
        for (int64_t x = 0; x < W; ++x) {
          share[x] = 1.0f - std::min(std::max(c[x], 0.0f), 1.0f);
          red[x] = 255.0f * r[x];
          green[x] = 255.0f * g[x];
          blue[x] = 255.0f * b[x];
        }
        blend_rgba_row(frame_row, share, red, green, blue, out_row, 0, W);
        continue;
      }
      float* kv = keep.data();
      float* sv = styled.data();
      for (int64_t x = 0; x < W; ++x) {
        kv[C * x] = kv[C * x + 1] = kv[C * x + 2] = 1.0f - std::min(std::max(c[x], 0.0f), 1.0f);
        sv[C * x] = 255.0f * r[x];
        sv[C * x + 1] = 255.0f * g[x];
        sv[C * x + 2] = 255.0f * b[x];
      }
      const int64_t n = C * W;
      for (int64_t i = 0; i < n; ++i) {
        const float value = sv[i] + static_cast<float>(frame_row[i]) * kv[i] + 0.5f;
        out_row[i] = static_cast<uint8_t>(std::min(std::max(value, 0.0f), 255.0f));
      }
    }
  });
}

torch::Tensor blend_layer(torch::Tensor frame, torch::Tensor layer) {
  TORCH_CHECK(frame.dim() == 3 && (frame.size(2) == 3 || frame.size(2) == 4) &&
              frame.scalar_type() == at::kByte, "frame must be uint8 [H,W,3] or [H,W,4]");
  TORCH_CHECK(layer.dim() == 3 && layer.size(0) == 4 && layer.scalar_type() == at::kFloat,
              "layer must be fp32 [4,h,w]");
  frame = frame.contiguous();
  layer = layer.contiguous();
  const int64_t h = layer.size(1), w = layer.size(2);
  const LayerOverFrame source{layer.data_ptr<float>(), h * w};
  if (h != frame.size(0) || w != frame.size(1))
    return frame.size(2) == 3 ? blend_scaled_from<3>(frame, source, h, w)
                              : blend_scaled_from<4>(frame, source, h, w);
  auto out = torch::empty_like(frame);
  const uint8_t* f = frame.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  if (frame.size(2) == 3)
    blend_layer_rows<3>(f, source.layer, o, h, w);
  else
    blend_layer_rows<4>(f, source.layer, o, h, w);
  return out;
}
