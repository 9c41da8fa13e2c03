// The style networks' 32 -> 32 channel 3x3 convs (stride 1 or 2) on Intel AMX, with the next
// norm's statistics summed as the output is written (see fast_conv.py, which calls it, and
// fused_norm.py, which builds this file into the same extension as fused_norm.cpp).
//
// Why not oneDNN, which runs these convs near the CPU's peak: each call of torch's oneDNN conv
// spends about 26 us outside the arithmetic (perf shows descriptors made and memory allocated
// on every call), a sixth of a quarter-resolution layer's 160 us; and the norm after it reads the
// whole output back for its statistics. Here a call costs what its tiles do, and the sums come
// from the tiles while they are in the L1 cache.
//
// Layout: x is the padded input [1, 32, H+2, W+2] (stride 2: [1, 32, 2H+1, 2W+1] or one more),
// channels-last bf16, so a run of 16 output pixels' inputs for one tap is a 16 x 64-byte tile
// with rows 64 (stride 2: 128) bytes apart; the weight is packed once per tap and
// half of the outputs as AMX's B operand (pairs of input channels interleaved, "VNNI").
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <algorithm>
#include <vector>

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define PARTIALSTYLE_AMX 1
#endif

namespace {

constexpr int64_t kChannels = 32;  // in and out
constexpr int kTaps = 9;

#ifdef PARTIALSTYLE_AMX
// The tile registers' shapes (palette 1): every tile here is 16 rows of 64 bytes. Tiles 0-3
// accumulate (2 output rows x 2 halves of the channels), 4-5 hold the input, 6-7 the weight.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

// x (bf16 as raw bits) -> fp32, 16 values.
inline __m512 widen_bf16(__m256i bits) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
#endif

}  // namespace

// Whether this build has the AMX conv and the OS lets the process use AMX's tile registers
// (Linux asks each process to request them once; oneDNN does the same).
bool amx_available() {
#ifdef PARTIALSTYLE_AMX
  static const bool permitted =
      syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
  return permitted;
#else
  return false;
#endif
}

// A conv weight [32, 32, 3, 3] -> AMX B tiles [9 taps][2 output halves][16 input pairs][16 outputs][2].
torch::Tensor amx_pack_weight(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == kChannels && weight.size(1) == kChannels &&
                  weight.size(2) == 3 && weight.size(3) == 3,
              "expected a [32, 32, 3, 3] conv weight");
  auto w = weight.to(at::kBFloat16).contiguous();
  auto packed = torch::empty({kTaps, 2, kChannels / 2, 16, 2}, w.options());
  auto from = w.accessor<at::BFloat16, 4>();
  auto to = packed.accessor<at::BFloat16, 5>();
  for (int t = 0; t < kTaps; ++t)
    for (int half = 0; half < 2; ++half)
      for (int pair = 0; pair < kChannels / 2; ++pair)
        for (int out = 0; out < 16; ++out)
          for (int q = 0; q < 2; ++q)
            to[t][half][pair][out][q] = from[half * 16 + out][2 * pair + q][t / 3][t % 3];
  return packed;
}

// conv(x, stride) + bias as bf16 [1, 32, H, W] channels-last, and with `moments` the sums
// region_moments(y, masks, 1) gives (per channel sum y and sum y^2, and with one mask plane
// [1,1,H,W] sum m y, sum m y^2 and sum m), from the rounded outputs as they are written: each
// output row summed in fp32, rows added in fp64, as region_moments does. W must be at least 16.
std::vector<torch::Tensor> amx_conv(torch::Tensor x, torch::Tensor packed, torch::Tensor bias,
                                    torch::Tensor masks, bool moments, int64_t stride) {
#ifdef PARTIALSTYLE_AMX
  TORCH_CHECK(amx_available(), "AMX is not available");
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1 && x.size(1) == kChannels &&
                  x.scalar_type() == at::kBFloat16 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "expected one padded bf16 image [1, 32, H+2, W+2], channels-last");
  TORCH_CHECK(packed.numel() == kTaps * kChannels * kChannels && packed.is_contiguous(),
              "expected a weight from amx_pack_weight");
  TORCH_CHECK(bias.numel() == kChannels && bias.scalar_type() == at::kFloat &&
                  bias.is_contiguous(), "expected an fp32 bias of 32");
  TORCH_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2");
  const int64_t Hp = x.size(2), Wp = x.size(3);
  const int64_t H = (Hp - 3) / stride + 1, W = (Wp - 3) / stride + 1;
  TORCH_CHECK(H >= 1 && W >= 16, "the output must be at least 16 pixels wide");
  const int64_t R = masks.numel() ? masks.size(1) : 0;
  TORCH_CHECK(R <= 1, "at most one mask plane");
  if (R)
    TORCH_CHECK(masks.is_contiguous() && masks.scalar_type() == at::kFloat &&
                    masks.size(2) == H && masks.size(3) == W,
                "masks must be fp32 [1,1,H,W] at the output's size");
  auto y = torch::empty({1, kChannels, H, W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const uint16_t* in = reinterpret_cast<const uint16_t*>(x.data_ptr());
  const uint16_t* weights = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  uint16_t* out = reinterpret_cast<uint16_t*>(y.data_ptr());
  const float* b = bias.data_ptr<float>();
  const float* m = R ? masks.data_ptr<float>() : nullptr;
  constexpr int64_t C = kChannels;
  const int64_t width = (1 + R) * 2 * C + R;  // region_moments' layout
  const int threads = at::get_num_threads();
  std::vector<double> partial(moments ? threads * width : 0, 0.0);

  at::parallel_for(0, (H + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
      config.bytes_per_row[t] = 64;
      config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
    alignas(64) float tiles[4][16][16];
    double* total = moments ? partial.data() + at::get_thread_num() * width : nullptr;
    const __m512 bias_low = _mm512_loadu_ps(b), bias_high = _mm512_loadu_ps(b + 16);
    for (int64_t pair = begin; pair < end; ++pair) {
      // Two output rows at a time (the second repeats the first on an odd last row): each
      // weight tile loaded serves both.
      const int64_t h = 2 * pair, h2 = std::min(h + 1, H - 1), rows = h2 > h ? 2 : 1;
      // Per output row: sum, sum of squares, masked sum and masked sum of squares (two halves
      // of the channels each), and the mask's sum (16 lanes).
      alignas(64) float row_sums[2][4][2][16] = {};
      alignas(64) float mask_sums[2][16] = {};
      for (int64_t w0 = 0; w0 < W; w0 += 16) {
        // The last run of 16 ends at the row's end, overlapping the one before; its
        // overlapped pixels are written twice (the same values) but summed once.
        const int64_t start = std::min(w0, W - 16), skip = w0 - start;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int t = 0; t < kTaps; ++t) {
          const int64_t dy = t / 3, dx = t % 3;
          const int64_t column = stride * start + dx;
          _tile_loadd(4, in + ((stride * h + dy) * Wp + column) * C, 64 * stride);
          _tile_loadd(5, in + ((stride * h2 + dy) * Wp + column) * C, 64 * stride);
          _tile_loadd(6, weights + (t * 2 + 0) * 512, 64);
          _tile_loadd(7, weights + (t * 2 + 1) * 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, tiles[0], 64);
        _tile_stored(1, tiles[1], 64);
        _tile_stored(2, tiles[2], 64);
        _tile_stored(3, tiles[3], 64);
        // Bias, rounding to bf16 and the store; the sums (of the rounded values, as the norm
        // would read them) in registers over the run, added to the row's once.
        auto finish = [&](int r, auto masked_flag) {
          constexpr bool masked = decltype(masked_flag)::value;
          const int64_t row = h + r;
          const float* mask_row = masked ? m + row * W + start : nullptr;
          __m512 sum[2] = {}, square[2] = {}, msum[2] = {}, msquare[2] = {};
          for (int64_t p = skip; p < 16; ++p) {
            const __m512 low = _mm512_add_ps(_mm512_load_ps(tiles[2 * r][p]), bias_low);
            const __m512 high = _mm512_add_ps(_mm512_load_ps(tiles[2 * r + 1][p]), bias_high);
            const __m512i rounded = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low));
            _mm512_storeu_si512(out + (row * W + start + p) * C, rounded);
            if (!moments) continue;
            const __m512 v[2] = {widen_bf16(_mm512_castsi512_si256(rounded)),
                                 widen_bf16(_mm512_extracti64x4_epi64(rounded, 1))};
            const __m512 weight = masked ? _mm512_set1_ps(mask_row[p]) : _mm512_setzero_ps();
            for (int half = 0; half < 2; ++half) {
              sum[half] = _mm512_add_ps(sum[half], v[half]);
              square[half] = _mm512_fmadd_ps(v[half], v[half], square[half]);
              if (masked) {
                const __m512 weighted = _mm512_mul_ps(weight, v[half]);
                msum[half] = _mm512_add_ps(msum[half], weighted);
                msquare[half] = _mm512_fmadd_ps(weighted, v[half], msquare[half]);
              }
            }
          }
          if (!moments) return;
          const __m512* parts[4] = {sum, square, msum, msquare};
          for (int kind = 0; kind < (masked ? 4 : 2); ++kind)
            for (int half = 0; half < 2; ++half) {
              float* acc = row_sums[r][kind][half];
              _mm512_store_ps(acc, _mm512_add_ps(_mm512_load_ps(acc), parts[kind][half]));
            }
          if (masked) {
            const __m512 weights16 = _mm512_maskz_loadu_ps(
                static_cast<__mmask16>(0xFFFFu << skip), mask_row);
            _mm512_store_ps(mask_sums[r], _mm512_add_ps(_mm512_load_ps(mask_sums[r]), weights16));
          }
        };
        for (int r = 0; r < rows; ++r) {
          // Runs the other region does not reach (most of a frame's) add nothing to its sums.
          const bool reached =
              R && moments &&
              _mm512_cmp_ps_mask(_mm512_loadu_ps(m + (h + r) * W + start), _mm512_setzero_ps(),
                                 _CMP_NEQ_UQ) != 0;
          if (reached) finish(r, std::true_type{});
          else finish(r, std::false_type{});
        }
      }
      if (!moments) continue;
      for (int r = 0; r < rows; ++r) {
        for (int kind = 0; kind < (R ? 4 : 2); ++kind)
          for (int64_t c = 0; c < C; ++c) total[kind * C + c] += row_sums[r][kind][c / 16][c % 16];
        if (R) {
          float mask_sum = 0.0f;
          for (float v : mask_sums[r]) mask_sum += v;
          total[(1 + R) * 2 * C] += mask_sum;
        }
      }
    }
    _tile_release();
  });
  auto sums = torch::zeros({moments ? width : 0}, x.options().dtype(at::kDouble));
  double* s = moments ? sums.data_ptr<double>() : nullptr;
  for (int t = 0; moments && t < threads; ++t)
    for (int64_t i = 0; i < width; ++i) s[i] += partial[t * width + i];
  return {y, sums};
#else
  (void)x, (void)packed, (void)bias, (void)masks, (void)moments, (void)stride;
  TORCH_CHECK(false, "this build has no AMX conv (the CPU lacks AMX)");
  return {};
#endif
}
