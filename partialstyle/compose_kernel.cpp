// Compositing kernels (see compose.py), built into the same extension as the style networks'
// kernels (style/fused_norm.py builds both files).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <tuple>

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
