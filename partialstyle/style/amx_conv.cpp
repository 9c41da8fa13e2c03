// The style networks' convs on Intel AMX (see fast_conv.py, which calls them, and fused_norm.py,
// which builds this file into the same extension as fused_norm.cpp, as one source):
// - amx_conv: the 32 -> 32 channel 3x3 convs (stride 1 or 2), with the next norm's statistics
//   summed as the output is written, and optionally the previous norm applied as the input is
//   read (InputRows);
// - amx_row_conv: the few-channel convs (at the end of this file), which take a kernel row's
//   taps as one run of values.
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
#include <cmath>
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

// The conv's padded input rows, either read in place from a padded image, or made on demand
// from the previous conv's raw output: its norm's affine (with one other region's blend, as
// fused_norm.cpp's region_affine computes it, to the same bits), ReLU, and the 1 pixel pad,
// into a ring of rows each thread reuses. The normalised image is then never written out and
// read back: for the 26-style network's full-resolution layer that is 15 MB each way.
class InputRows {
 public:
  // A padded image [Hp, Wp] of 32 channels.
  InputRows(const uint16_t* padded, int64_t Wp) : padded_(padded), Wp_(Wp) {}
  // The raw image [H, W] of 32 channels, normalised by rows[4] = {S, T, S1, T1} (32 floats
  // each: the base's scale and shift, the other region's differences) blended by `mask`
  // [H, W] (nullptr: one region), ReLU'd if `relu`, padded by 1 (reflect or replicate).
  InputRows(const uint16_t* raw, int64_t H, int64_t W, const float* const rows[4],
            const float* mask, bool relu, bool reflect)
      : Wp_(W + 2), raw_(raw), H_(H), W_(W), mask_(mask), relu_(relu), reflect_(reflect),
        ring_(kRing * (W + 2) * kChannels + 32) {
    // Pixels on cache lines (64 bytes each): a pixel split across two costs each store and
    // tile row twice.
    const auto address = reinterpret_cast<uintptr_t>(ring_.data());
    ring_start_ = ring_.data() + ((64 - address % 64) % 64) / sizeof(uint16_t);
    // A pixel's 32 bf16 values widen without shuffles into its even channels (each 32-bit
    // lane's low half shifted up) and its odd ones (the high half kept), so the rows are
    // taken apart the same way, and one permute interleaves the rounded halves again: with
    // only two ports for 512-bit work, shuffles per pixel are what a row costs.
    for (int i = 0; i < 4; ++i)
      for (int half = 0; half < 2; ++half)
        for (int j = 0; j < 16; ++j) affine_[i][half][j] = rows[i][2 * j + half];
    for (int i = 0; i < 32; ++i) order_[i] = static_cast<uint16_t>(i % 2 ? 16 + i / 2 : i / 2);
  }

  // Padded rows first..last (at most kRing of them, first never lower than the last call's)
  // ready to read. (Making the next pair's rows a part at a time between this pair's tiles,
  // so that the vector and tile work would overlap, was slower: 1.37-1.79 against 1.28 ms for
  // the full-resolution layer.)
  void prepare(int64_t first, int64_t last) {
    if (!raw_) return;
    if (first > made_end_ || first < made_begin_) made_begin_ = made_end_ = first;
    for (; made_end_ <= last; ++made_end_) make(made_end_, 0, W_);
    made_begin_ = std::max(made_begin_, last + 1 - kRing);
  }

  // Padded row hp, which must be prepared.
  const uint16_t* row(int64_t hp) const {
    if (!raw_) return padded_ + hp * Wp_ * kChannels;
    return ring_start_ + (hp % kRing) * Wp_ * kChannels;
  }

  // A row pair's input: 5 rows at stride 2, 4 at stride 1.
  static constexpr int64_t kRing = 8;

 private:
  // The interior row or column that padded coordinate q (pad 1) copies (fused_norm.cpp's).
  static int64_t source(int64_t q, int64_t n, bool reflect) {
    return padded_source(q, 1, n, reflect);
  }

  // Pixels begin..end of padded row hp's interior, and its border once the row is complete.
  void make(int64_t hp, int64_t begin, int64_t end) {
    constexpr int64_t C = kChannels;
    const int64_t h = source(hp, H_, reflect_);
    const uint16_t* x = raw_ + h * W_ * C;
    uint16_t* out = ring_start_ + (hp % kRing) * Wp_ * C;
    const float* m = mask_ ? mask_ + h * W_ : nullptr;
    bool touched = false;  // whether the other region reaches these pixels
    for (int64_t w = begin; m && !touched && w < end; w += 16)
      touched = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(lanes(end - w), m + w),
                                   _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0;
    __m512 s0[2], t0[2], s1[2], t1[2];
    for (int half = 0; half < 2; ++half) {
      s0[half] = _mm512_load_ps(affine_[0][half]);
      t0[half] = _mm512_load_ps(affine_[1][half]);
      s1[half] = _mm512_load_ps(affine_[2][half]);
      t1[half] = _mm512_load_ps(affine_[3][half]);
    }
    const __m512i interleave = _mm512_load_si512(order_);
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    const bool relu = relu_;
    auto pixels = [&](auto touched_flag) {
      constexpr bool blended = decltype(touched_flag)::value;
      for (int64_t w = begin; w < end; ++w) {
        const __m512i bits = _mm512_loadu_si512(x + w * C);
        __m512 v[2] = {_mm512_castsi512_ps(_mm512_slli_epi32(bits, 16)),
                       _mm512_castsi512_ps(_mm512_and_si512(bits, high))};
        const __m512 mv = blended ? _mm512_set1_ps(m[w]) : _mm512_setzero_ps();
        for (int half = 0; half < 2; ++half) {
          const __m512 scale = blended ? _mm512_fmadd_ps(mv, s1[half], s0[half]) : s0[half];
          const __m512 shift = blended ? _mm512_fmadd_ps(mv, t1[half], t0[half]) : t0[half];
          v[half] = _mm512_fmadd_ps(v[half], scale, shift);
          if (relu) v[half] = _mm512_max_ps(v[half], _mm512_setzero_ps());
        }
        const __m512i packed = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(v[1], v[0]));
        _mm512_storeu_si512(out + (w + 1) * C, _mm512_permutexvar_epi16(interleave, packed));
      }
    };
    if (touched) pixels(std::true_type{});
    else pixels(std::false_type{});
    if (end < W_) return;
    for (const int64_t wp : {int64_t{0}, Wp_ - 1}) {
      const int64_t from = source(wp, W_, reflect_) + 1;
      std::copy(out + from * C, out + (from + 1) * C, out + wp * C);
    }
  }

  const uint16_t* padded_ = nullptr;
  int64_t Wp_;
  const uint16_t* raw_ = nullptr;
  int64_t H_ = 0, W_ = 0;
  const float* mask_ = nullptr;
  bool relu_ = false, reflect_ = false;
  alignas(64) float affine_[4][2][16] = {};  // S, T, S1, T1: even channels, then odd
  alignas(64) uint16_t order_[32] = {};  // word i of a packed pair goes to word order_[i]
  std::vector<uint16_t> ring_;
  uint16_t* ring_start_ = nullptr;
  int64_t made_begin_ = 0, made_end_ = 0;  // the padded rows [begin, end) in the ring
};
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
//
// With `in_scale` not empty, x is the previous conv's raw output [1, 32, Hi, Wi] and the conv's
// input is region_affine(x, in_masks, in_scale, in_shift, relu=in_relu, pad=1, in_reflect),
// made row by row as the conv reads it (InputRows): in_scale and in_shift are
// region_norm_rows' [R, 32] rows, in_masks the other region's mask [1, 1, Hi, Wi] (R = 2) or
// empty (R = 1).
std::vector<torch::Tensor> amx_conv(torch::Tensor x, torch::Tensor packed, torch::Tensor bias,
                                    torch::Tensor masks, bool moments, int64_t stride,
                                    torch::Tensor in_scale, torch::Tensor in_shift,
                                    torch::Tensor in_masks, bool in_relu, bool in_reflect) {
#ifdef PARTIALSTYLE_AMX
  TORCH_CHECK(amx_available(), "AMX is not available");
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1 && x.size(1) == kChannels &&
                  x.scalar_type() == at::kBFloat16 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "expected one bf16 image [1, 32, H, W], channels-last");
  TORCH_CHECK(packed.numel() == kTaps * kChannels * kChannels && packed.is_contiguous(),
              "expected a weight from amx_pack_weight");
  TORCH_CHECK(bias.numel() == kChannels && bias.scalar_type() == at::kFloat &&
                  bias.is_contiguous(), "expected an fp32 bias of 32");
  TORCH_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2");
  const bool normalise = in_scale.numel() > 0;
  const int64_t in_regions = normalise ? in_scale.size(0) : 0;
  if (normalise) {
    TORCH_CHECK(in_scale.dim() == 2 && in_scale.size(1) == kChannels && in_regions <= 2 &&
                    in_scale.sizes() == in_shift.sizes() && in_scale.is_contiguous() &&
                    in_shift.is_contiguous() && in_scale.scalar_type() == at::kFloat &&
                    in_shift.scalar_type() == at::kFloat,
                "in_scale and in_shift must be fp32 [R, 32] with R 1 or 2");
    TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "the input must be at least 2 x 2");
    TORCH_CHECK(in_regions == 1 ? in_masks.numel() == 0
                                : (in_masks.is_contiguous() &&
                                   in_masks.scalar_type() == at::kFloat &&
                                   in_masks.numel() == x.size(2) * x.size(3)),
                "in_masks must be fp32 [1, 1, Hi, Wi] for two regions, else empty");
  }
  const int64_t Hp = x.size(2) + (normalise ? 2 : 0), Wp = x.size(3) + (normalise ? 2 : 0);
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
    std::vector<float> zeros(2 * kChannels, 0.0f);
    const float* affine[4] = {};
    if (normalise) {
      affine[0] = in_scale.data_ptr<float>();
      affine[1] = in_shift.data_ptr<float>();
      affine[2] = in_regions == 2 ? affine[0] + kChannels : zeros.data();
      affine[3] = in_regions == 2 ? affine[1] + kChannels : zeros.data();
    }
    InputRows inputs =
        normalise ? InputRows(in, x.size(2), x.size(3), affine,
                              in_regions == 2 ? in_masks.data_ptr<float>() : nullptr, in_relu,
                              in_reflect)
                  : InputRows(in, Wp);
    for (int64_t pair = begin; pair < end; ++pair) {
      // Two output rows at a time (the second repeats the first on an odd last row): each
      // weight tile loaded serves both.
      const int64_t h = 2 * pair, h2 = std::min(h + 1, H - 1), rows = h2 > h ? 2 : 1;
      inputs.prepare(stride * h, stride * h2 + 2);
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
          _tile_loadd(4, inputs.row(stride * h + dy) + column * C, 64 * stride);
          _tile_loadd(5, inputs.row(stride * h2 + dy) + column * C, 64 * stride);
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
  (void)x, (void)packed, (void)bias, (void)masks, (void)moments, (void)stride, (void)in_scale,
      (void)in_shift, (void)in_masks, (void)in_relu, (void)in_reflect;
  TORCH_CHECK(false, "this build has no AMX conv (the CPU lacks AMX)");
  return {};
#endif
}

// The few-channel convs (fast_conv.PackedConv._row_kernels says which), such as the arbitrary
// network's first two, run on 2x2 pixel blocks (fast_conv.blocked_weight,
// strided_blocked_weight): 12 in (the image's 3, in blocks) and 32 out, then 32 in and 16 out.
// oneDNN runs those at a half and a third of the peak. Here a kernel row's
// taps of one output pixel are k neighbouring input pixels, whose channels lie in one
// contiguous run of k * Cin values (channels-last), so a tile row can take that run whole:
// 60 values in two chunks of 30 for the 5x5 conv on 12 channels, where a tap at a time would
// fill 12 of a tile row's 32. The result is written with ReLU straight into the next conv's
// padded input (its borders by fused_norm.cpp's pad_borders: both files are built as one
// source), which saves the padding pass after each.

// The chunks a kernel row's k * Cin values are split into: the fewest whose size is even (a
// tile row holds pairs) and at most 32 (a tile row's 64 bytes). fast_conv._row_chunks mirrors
// it to judge how full the tile rows are.
int64_t row_chunks(int64_t values) {
  for (int64_t n = 1; n <= values; ++n)
    if (values % n == 0 && (values / n) % 2 == 0 && values / n <= 32) return n;
  return 0;
}

// A conv weight [Cout <= 32, Cin, k, k] -> AMX B tiles [k rows][chunks][ceil(Cout/16) halves]
// [chunk/2 input pairs][16 outputs][2] (outputs past Cout zero), value v of a kernel row being
// tap v / Cin, channel v % Cin.
torch::Tensor amx_pack_row_weight(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) >= 1 && weight.size(0) <= 32 &&
                  weight.size(2) == weight.size(3),
              "expected a [Cout <= 32, Cin, k, k] conv weight");
  auto w = weight.to(at::kBFloat16).contiguous();
  const int64_t cin = w.size(1), k = w.size(2), cout = w.size(0), halves = (cout + 15) / 16;
  const int64_t chunks = row_chunks(k * cin);
  TORCH_CHECK(chunks > 0, "a kernel row's k * Cin values do not split into even chunks of 32 or less");
  const int64_t pairs = k * cin / chunks / 2;
  auto packed = torch::empty({k, chunks, halves, pairs, 16, 2}, w.options());
  auto from = w.accessor<at::BFloat16, 4>();
  auto to = packed.accessor<at::BFloat16, 6>();
  for (int64_t dy = 0; dy < k; ++dy)
    for (int64_t j = 0; j < chunks; ++j)
      for (int64_t half = 0; half < halves; ++half)
        for (int64_t pair = 0; pair < pairs; ++pair)
          for (int out = 0; out < 16; ++out)
            for (int q = 0; q < 2; ++q) {
              const int64_t v = j * 2 * pairs + 2 * pair + q;
              to[dy][j][half][pair][out][q] = half * 16 + out < cout
                                                  ? from[half * 16 + out][v % cin][dy][v / cin]
                                                  : at::BFloat16(0.0f);
            }
  return packed;
}

#ifdef PARTIALSTYLE_AMX
namespace {

template <int HALVES>
void row_conv_kernel(const uint16_t* in, int64_t cin, int64_t Wp, int64_t k, int64_t stride,
                     int64_t chunks, int64_t pairs, const uint16_t* weights, const float* bias,
                     bool relu, uint16_t* out, int64_t cout, int64_t H, int64_t W,
                     int64_t out_row, int64_t offset) {
  // The last half's outputs that exist (12 of 16 for the networks' last convs).
  const __mmask16 last = static_cast<__mmask16>((1u << (cout - 16 * (HALVES - 1))) - 1);
  at::parallel_for(0, (H + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    TileConfig config;
    for (int t = 0; t < 4; ++t) {  // accumulators: 16 pixels x 16 outputs
      config.bytes_per_row[t] = 64;
      config.rows[t] = 16;
    }
    for (int t = 4; t < 6; ++t) {  // a chunk of 16 pixels' runs
      config.bytes_per_row[t] = static_cast<uint16_t>(4 * pairs);
      config.rows[t] = 16;
    }
    for (int t = 6; t < 8; ++t) {  // the chunk's weights: its pairs x 16 outputs
      config.bytes_per_row[t] = 64;
      config.rows[t] = static_cast<uint8_t>(pairs);
    }
    _tile_loadconfig(&config);
    alignas(64) float tiles[2][HALVES][16][16];
    __m512 bias_v[HALVES];
    for (int half = 0; half < HALVES; ++half)
      bias_v[half] = _mm512_maskz_loadu_ps(half == HALVES - 1 ? last : 0xFFFF, bias + 16 * half);
    const __m512 zero = _mm512_setzero_ps();
    const int64_t tile = pairs * 32;  // a weight tile's values
    for (int64_t pair = begin; pair < end; ++pair) {
      const int64_t h = 2 * pair, h2 = std::min(h + 1, H - 1), rows = h2 > h ? 2 : 1;
      for (int64_t w0 = 0; w0 < W; w0 += 16) {
        const int64_t start = std::min(w0, W - 16), skip = w0 - start;
        _tile_zero(0);
        _tile_zero(2);
        if (HALVES == 2) {
          _tile_zero(1);
          _tile_zero(3);
        }
        for (int64_t dy = 0; dy < k; ++dy)
          for (int64_t j = 0; j < chunks; ++j) {
            const uint16_t* wt = weights + (dy * chunks + j) * HALVES * tile;
            const int64_t first = j * 2 * pairs;  // the chunk's first value in the run
            const int64_t column = stride * start * cin + first;
            _tile_loadd(4, in + (stride * h + dy) * Wp * cin + column, stride * cin * 2);
            _tile_loadd(5, in + (stride * h2 + dy) * Wp * cin + column, stride * cin * 2);
            _tile_loadd(6, wt, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            if (HALVES == 2) {
              _tile_loadd(7, wt + tile, 64);
              _tile_dpbf16ps(1, 4, 7);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
        _tile_stored(0, tiles[0][0], 64);
        _tile_stored(2, tiles[1][0], 64);
        if (HALVES == 2) {
          _tile_stored(1, tiles[0][HALVES - 1], 64);
          _tile_stored(3, tiles[1][HALVES - 1], 64);
        }
        for (int r = 0; r < rows; ++r)
          for (int64_t p = skip; p < 16; ++p) {
            __m512 v[HALVES];
            for (int half = 0; half < HALVES; ++half) {
              v[half] = _mm512_add_ps(_mm512_load_ps(tiles[r][half][p]), bias_v[half]);
              if (relu) v[half] = _mm512_max_ps(v[half], zero);
            }
            uint16_t* o = out + (h + r) * out_row + (start + p) * cout + offset;
            if constexpr (HALVES == 2)
              _mm512_mask_storeu_epi16(
                  o, 0xFFFFu | (static_cast<__mmask32>(last) << 16),
                  reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(v[1], v[0])));
            else
              _mm256_mask_storeu_epi16(o, last,
                                       reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v[0])));
          }
      }
    }
    _tile_release();
  });
}

}  // namespace
#endif

// The conv of the padded input x [1, Cin, Hi, Wi] (bf16, channels-last) by `packed` (from
// amx_pack_row_weight; Cout outputs, the bias's length) with `stride` 1 or 2, + bias, then ReLU
// if `relu`: its top-left `height` x `width` output pixels, reflect-padded by `pad` (as
// region_affine pads) in `block` layout (1, or 2 for an output in 2x2 blocks that the padded
// result keeps, see OutLayout; `pad` even). The output must be at least 16 pixels wide.
torch::Tensor amx_row_conv(torch::Tensor x, torch::Tensor packed, torch::Tensor bias, bool relu,
                           int64_t stride, int64_t height, int64_t width, int64_t pad,
                           int64_t block) {
#ifdef PARTIALSTYLE_AMX
  TORCH_CHECK(amx_available(), "AMX is not available");
  TORCH_CHECK(packed.dim() == 6 && packed.is_contiguous() && packed.size(4) == 16,
              "expected a weight from amx_pack_row_weight");
  const int64_t k = packed.size(0), chunks = packed.size(1), halves = packed.size(2);
  const int64_t pairs = packed.size(3), cin = chunks * pairs * 2 / k, cout = bias.numel();
  TORCH_CHECK(stride == 1 || stride == 2, "stride must be 1 or 2");
  TORCH_CHECK(x.dim() == 4 && x.size(0) == 1 && x.size(1) == cin &&
                  x.scalar_type() == at::kBFloat16 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "expected one padded bf16 image [1, Cin, H, W], channels-last, Cin the weight's");
  TORCH_CHECK(cout > 16 * (halves - 1) && cout <= 16 * halves &&
                  bias.scalar_type() == at::kFloat && bias.is_contiguous(),
              "expected an fp32 bias, one per output");
  TORCH_CHECK(height >= 1 && width >= 16 && height <= (x.size(2) - k) / stride + 1 &&
                  width <= (x.size(3) - k) / stride + 1,
              "the output must be at least 16 pixels wide and within the conv's");
  TORCH_CHECK((block == 1 && pad >= 0) || (block == 2 && pad >= 0 && pad % 2 == 0 && cout % 4 == 0),
              "block must be 1, or 2 with an even pad");
  const int64_t margin = pad / block;  // the pad in output pixels (blocks)
  const int64_t Ho = height + 2 * margin, Wo = width + 2 * margin;
  auto y = torch::empty({1, cout, Ho, Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto* out = reinterpret_cast<uint16_t*>(y.data_ptr());
  const auto* in = reinterpret_cast<const uint16_t*>(x.data_ptr());
  const auto* w = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  const float* b = bias.data_ptr<float>();
  const int64_t offset = (margin * Wo + margin) * cout;
  if (halves == 2)
    row_conv_kernel<2>(in, cin, x.size(3), k, stride, chunks, pairs, w, b, relu, out, cout,
                       height, width, Wo * cout, offset);
  else
    row_conv_kernel<1>(in, cin, x.size(3), k, stride, chunks, pairs, w, b, relu, out, cout,
                       height, width, Wo * cout, offset);
  const int64_t C = cout / (block * block);
  pad_borders(reinterpret_cast<at::BFloat16*>(out), height * block, width * block, C, pad, true,
              OutLayout{C, width * block + 2 * pad, block});
  return y;
#else
  (void)x, (void)packed, (void)bias, (void)relu, (void)height, (void)width, (void)pad,
      (void)block;
  TORCH_CHECK(false, "this build has no AMX conv (the CPU lacks AMX)");
  return {};
#endif
}
