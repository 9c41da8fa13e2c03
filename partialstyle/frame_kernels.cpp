// Per-pixel kernels of the frame passes around the networks (compositing, stabilisation), built
// into the same extension as the style networks' kernels (style/fused_norm.py builds both
// files). Each is one pass where the torch ops that define it are several.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

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
  at::parallel_for(0, H, 16, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const int64_t i = h * W + w;
        const float c = in[3 * plane + i];
        uint8_t* o = out + 3 * i;
        if (c > threshold) {
          const float inverse = 1.0f / c;
          for (int k = 0; k < 3; ++k) o[k] = to_byte(in[k * plane + i] * inverse);
        } else {
          const float* pixel = frame + h * sh + w * sw;
          for (int k = 0; k < 3; ++k) o[k] = to_byte(pixel[k * sc]);
        }
        cov[i] = std::min(std::max(c, 0.0f), 1.0f);
      }
  });
  return {color, coverage};
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
