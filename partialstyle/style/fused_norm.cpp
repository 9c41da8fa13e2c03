// The fused region normalisation kernels of the style networks (see fused_norm.py, which
// builds this file with torch's extension builder on first use).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <type_traits>
#include <immintrin.h>
#include <vector>

namespace {

inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) {
  uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define PARTIALSTYLE_AVX512 1
// 16 values at a time. GCC leaves the scalar loops below unvectorised (it unrolls their short
// constant-length inner loops first), so the row loops that carry most of the traffic use
// these; `count` < 16 masks the tail. bf16 is converted exactly as to_float and store_one do,
// so both forms give the same bits.
inline __mmask16 lanes(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1u);
}
inline __m512 load16(const float* p, int64_t count) {
  return _mm512_maskz_loadu_ps(lanes(count), p);
}
inline __m512 load16(const at::BFloat16* p, int64_t count) {
  const __m256i half = _mm256_maskz_loadu_epi16(lanes(count), p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}
inline void store16(float* p, __m512 v, int64_t count) {
  _mm512_mask_storeu_ps(p, lanes(count), v);
}
#ifdef __AVX512BF16__
// One instruction where the CPU has it: the same round-to-nearest-even, except that it flushes
// subnormal values (below 1.2e-38) to zero.
inline void store16(at::BFloat16* p, __m512 v, int64_t count) {
  _mm256_mask_storeu_epi16(p, lanes(count), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}
#else
inline void store16(at::BFloat16* p, __m512 v, int64_t count) {
  __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  bits = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
  const __m256i half = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16));
  _mm256_mask_storeu_epi16(p, lanes(count), half);
}
#endif
// exp(v) for |v| < 88: v = k ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial to
// degree 7 (relative error below 1e-7 there), times 2^k.
inline __m512 exp16(__m512 v) {
  v = _mm512_max_ps(_mm512_min_ps(v, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), v);  // ln2, high bits
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187045e-06f), r);  // and the rest
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  for (const float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(p, k);
}
constexpr bool kVectorised = true;
#else
constexpr bool kVectorised = false;
#endif

// Layout of the kernels' input x: the conv output z [1,K,Hz,Wz] with channels innermost. With
// `ph` = 1 it is the image itself (K = C channels). With `ph` = 2 it is a subpixel conv's output
// before pixel_shuffle (K = 4C): logical pixel (2hz + i, 2wz + j) has channel c at z channel
// 4c + 2i + j, so the kernels read the upsampled image without it ever being written.
// Flat rows of z are processed with period P (a multiple of K and of 16 floats, one AVX-512
// vector), lane j holding z channel j % K, so the loops vectorise for any channel count.
template <int KK>
constexpr int period() { return KK > 0 ? std::lcm(KK, 16) : 0; }

// Whether any mask but the base's is nonzero in row h. Every norm asks it of every row twice
// (statistics, then affine), so it runs in vectors: a scalar scan of the rows a person does
// not reach was an eighth of a subpixel layer's statistics pass.
inline bool row_touched(const float* m, int64_t R, int64_t H, int64_t W, int64_t h) {
  for (int64_t r = 0; r < R; ++r) {
    const float* row = m + (r * H + h) * W;
    int64_t w = 0;
#ifdef PARTIALSTYLE_AVX512
    const __m512 zero = _mm512_setzero_ps();
    for (; w + 64 <= W; w += 64) {
      const __mmask16 any = _mm512_cmp_ps_mask(_mm512_loadu_ps(row + w), zero, _CMP_NEQ_UQ) |
                            _mm512_cmp_ps_mask(_mm512_loadu_ps(row + w + 16), zero, _CMP_NEQ_UQ) |
                            _mm512_cmp_ps_mask(_mm512_loadu_ps(row + w + 32), zero, _CMP_NEQ_UQ) |
                            _mm512_cmp_ps_mask(_mm512_loadu_ps(row + w + 48), zero, _CMP_NEQ_UQ);
      if (any) return true;
    }
#endif
    if (std::any_of(row + w, row + W, [](float v) { return v != 0.0f; })) return true;
  }
  return false;
}

// The sum of n floats, in 16 partial sums (a single running sum is one long dependency chain).
inline float row_sum(const float* v, int64_t n) {
  float partial[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] += v[i + j];
  for (; i < n; ++i) partial[i % 16] += v[i];
  return std::accumulate(partial, partial + 16, 0.0f);
}

#ifdef PARTIALSTYLE_AVX512
// For a subpixel conv's output (K = 4C values a z pixel, value 4c + 2i + j at pixel (2hz + i,
// 2wz + j)): the permute that makes vector v of a period's masks from two loads, the mask
// row's pairs of the period's pixels (row 2hz in lanes 0-15, row 2hz + 1 in 16-31).
inline __m512i quad_pick(int64_t K, int64_t v) {
  alignas(64) int32_t index[16];
  for (int l = 0; l < 16; ++l) {
    const int64_t j = 16 * v + l, pixel = j / K, phase = j % 4;
    index[l] = static_cast<int32_t>(phase < 2 ? 2 * pixel + phase : 16 + 2 * pixel + phase - 2);
  }
  return _mm512_load_si512(index);
}
#endif

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
  if constexpr (PH == 2) {
    // Each channel's four phases of a z pixel are its 2x2 pixels' masks in row order: one
    // quad, copied once per channel (four scalar stores a channel before, with stride 4).
    const float* top = plane + hz * 2 * W;
    const float* bottom = top + W;
    int64_t wz = 0;
#ifdef PARTIALSTYLE_AVX512
    // In vectors, a period of P = lcm(K, 16) values (its P / K <= 4 pixels) at a time: both
    // mask rows' pairs of the period's pixels in two loads, each vector of values one permute.
    const int64_t P = std::lcm<int64_t>(K, 16), pixels = P / K, V = P / 16;
    if (V <= 16) {
      __m512i pick[16];
      for (int64_t v = 0; v < V; ++v) pick[v] = quad_pick(K, v);
      const __mmask16 pairs = lanes(2 * pixels);
      for (; wz + pixels <= Wz; wz += pixels) {
        const __m512 t = _mm512_maskz_loadu_ps(pairs, top + 2 * wz);
        const __m512 b = _mm512_maskz_loadu_ps(pairs, bottom + 2 * wz);
        for (int64_t v = 0; v < V; ++v)
          _mm512_storeu_ps(out + wz * K + 16 * v, _mm512_permutex2var_ps(t, pick[v], b));
      }
    }
#endif
    for (; wz < Wz; ++wz) {
      const float quad[4] = {top[2 * wz], top[2 * wz + 1], bottom[2 * wz], bottom[2 * wz + 1]};
      float* o = out + wz * K;
      for (int64_t c = 0; c < C; ++c) std::memcpy(o + c * phases, quad, sizeof quad);
    }
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

#ifdef PARTIALSTYLE_AVX512
// The masks of a subpixel conv's output values in vectors, straight from the two mask rows of
// z row hz (no expanded row written and read back): a period of P = lcm(K, 16) values is P / K
// z pixels, whose masks are P / K pairs in each row, so two loads and one permute a vector.
// For K a multiple of 4 (always: K = 4C), with V = P / 16 <= 4.
template <int P>
class QuadMasks {
 public:
  static constexpr int V = P / 16;
  explicit QuadMasks(int64_t K) : pixels_(P / K), pairs_(lanes(2 * (P / K))) {
    for (int v = 0; v < V; ++v) pick_[v] = quad_pick(K, v);
  }
  // Vector v of the masks of the period that starts `period` periods into the row.
  __m512 at(const float* top, const float* bottom, int64_t period, int v) const {
    const int64_t at = 2 * pixels_ * period;
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(pairs_, top + at), pick_[v],
                                  _mm512_maskz_loadu_ps(pairs_, bottom + at));
  }

 private:
  int64_t pixels_;
  __mmask16 pairs_;
  __m512i pick_[V > 0 ? V : 1];
};
#endif

#ifdef PARTIALSTYLE_AVX512
// Per-lane sums over the first `whole` values of a row of periods of P values (whole
// vectors): of x and x^2 into a[P] and b[P] when PLAIN, and of w x and w x^2 into wa[P] and
// wb[P] when WEIGHTED, w each value's weight as weight(i, v) gives it (the vector at value
// i + 16 v); one read of the row for both. A period of fewer than four vectors is summed in
// several interleaved sets of sums, added at the end: a single running sum per lane is a chain
// of dependent adds, four cycles each, and left the subpixel layers' 16-value periods at a
// third of the speed of the 32-channel layers' per value.
template <int P, bool PLAIN, bool WEIGHTED, typename T, typename Weight>
inline void period_sums(const T* row, int64_t whole, Weight weight, float* a, float* b,
                        float* wa, float* wb) {
  constexpr int V = P / 16, SETS = V >= 4 ? 1 : 4 / V;
  __m512 sa[SETS][V], sb[SETS][V], swa[SETS][V], swb[SETS][V];
  for (int s = 0; s < SETS; ++s)
    for (int v = 0; v < V; ++v) sa[s][v] = sb[s][v] = swa[s][v] = swb[s][v] = _mm512_setzero_ps();
  // Fully unrolled, so the sums stay in registers (GCC kept them on the stack otherwise).
  auto add = [&](int s, int64_t i) {
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      const __m512 value = load16(row + i + 16 * v, 16);
      if (PLAIN) {
        sa[s][v] = _mm512_add_ps(sa[s][v], value);
        sb[s][v] = _mm512_fmadd_ps(value, value, sb[s][v]);
      }
      if (WEIGHTED) {
        const __m512 weighted = _mm512_mul_ps(weight(i, v), value);
        swa[s][v] = _mm512_add_ps(swa[s][v], weighted);
        swb[s][v] = _mm512_fmadd_ps(weighted, value, swb[s][v]);
      }
    }
  };
  int64_t i = 0;
  for (; i + SETS * P <= whole; i += SETS * P) {
#pragma GCC unroll 16
    for (int s = 0; s < SETS; ++s) add(s, i + s * P);
  }
  for (; i < whole; i += P) add(0, i);
  for (int s = 1; s < SETS; ++s)
    for (int v = 0; v < V; ++v) {
      sa[0][v] = _mm512_add_ps(sa[0][v], sa[s][v]);
      sb[0][v] = _mm512_add_ps(sb[0][v], sb[s][v]);
      swa[0][v] = _mm512_add_ps(swa[0][v], swa[s][v]);
      swb[0][v] = _mm512_add_ps(swb[0][v], swb[s][v]);
    }
  for (int v = 0; v < V; ++v) {
    if (PLAIN) {
      _mm512_storeu_ps(a + 16 * v, sa[0][v]);
      _mm512_storeu_ps(b + 16 * v, sb[0][v]);
    }
    if (WEIGHTED) {
      _mm512_storeu_ps(wa + 16 * v, swa[0][v]);
      _mm512_storeu_ps(wb + 16 * v, swb[0][v]);
    }
  }
}
#endif

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
        bool touched = false;
        for (int64_t i = 0; R > 0 && i < ph; ++i) touched |= row_touched(m, R, H, W, hz * ph + i);
        // Each value's mask: one per pixel broadcast over its channels where a pixel is whole
        // vectors, else expanded along the row first.
        constexpr bool per_pixel = kVectorised && PH == 1 && KK > 0 && KK % 16 == 0;
        // With one other region, one read of the row gives every sum.
        const bool one_read = kVectorised && P > 0 && P % 16 == 0 && P <= 64 && R == 1 && touched;
        constexpr int64_t lanes = P > 0 ? P : 1024;  // K = C * phases <= 1024
        float masked_a[lanes], masked_b[lanes];
        if constexpr (P > 0) {
          float a[P] = {}, b[P] = {};
          const int64_t n = Wz * K, whole = n - n % P;
#ifdef PARTIALSTYLE_AVX512
          if constexpr (P % 16 == 0 && P <= 64) {
            // In vectors: GCC leaves this loop scalar for some periods (16 here, which
            // made the subpixel layers' statistics ten times slower per value than the
            // 32-channel layers').
            if (one_read && per_pixel) {
              const float* mask_row = m + hz * W;
              auto mask = [&](int64_t i, int) { return _mm512_set1_ps(mask_row[i / P]); };
              period_sums<P, true, true>(xrow, whole, mask, a, b, masked_a, masked_b);
            } else if (one_read && PH == 2 && whole == n) {  // (a tail reads mexp)
              const QuadMasks<P> quads(K);
              const float* top = m + hz * 2 * W;
              auto mask = [&](int64_t i, int v) { return quads.at(top, top + W, i / P, v); };
              period_sums<P, true, true>(xrow, whole, mask, a, b, masked_a, masked_b);
            } else if (one_read) {
              mexp.resize(Wz * K);
              expand_mask<PH>(m, W, hz, Wz, K, C, mexp.data());
              const float* mk = mexp.data();
              auto mask = [&](int64_t i, int v) { return load16(mk + i + 16 * v, 16); };
              period_sums<P, true, true>(xrow, whole, mask, a, b, masked_a, masked_b);
            } else {
              auto none = [](int64_t, int) { return _mm512_setzero_ps(); };
              period_sums<P, true, false>(xrow, whole, none, a, b, nullptr, nullptr);
            }
          } else
#endif
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
        if (touched) {
          // Each value weighted by its own pixel's mask, as flat loops.
          mexp.resize(Wz * K);
          for (int64_t r = 0; r < R; ++r) {
            if (!per_pixel && !one_read)
              expand_mask<PH>(m + r * H * W, W, hz, Wz, K, C, mexp.data());
            float* r1 = row.data() + (1 + r) * 2 * C;
            float* r2 = r1 + C;
            const int64_t n = Wz * K, p = P > 0 ? P : K, whole = n - n % p;
            float a[lanes] = {}, b[lanes] = {};
            const float* __restrict__ mk = mexp.data();
#ifdef PARTIALSTYLE_AVX512
            if (one_read) {
              std::copy(masked_a, masked_a + p, a);
              std::copy(masked_b, masked_b + p, b);
            } else if constexpr (P > 0 && P % 16 == 0) {
              const float* mask_row = m + (r * H + hz) * W;
              auto mask = [&](int64_t i, int v) {
                return per_pixel ? _mm512_set1_ps(mask_row[i / KK]) : load16(mk + i + 16 * v, 16);
              };
              period_sums<P, false, true>(xrow, whole, mask, nullptr, nullptr, a, b);
            } else
#endif
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
              row[(1 + R) * 2 * C + r] += row_sum(plane_row, W);
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
#ifdef PARTIALSTYLE_AVX512
  const __m512 zero = _mm512_setzero_ps();
  int64_t start = 0;
  if constexpr (P > 0 && P % 16 == 0 && P <= 64) {
    // Whole periods with the period's scales and shifts in registers and unmasked loads and
    // stores: per value, the loop below reloads both and computes a lane mask, which left
    // a quarter-resolution layer's pass bound by instructions rather than memory.
    constexpr int V = P / 16;
    __m512 scale[V], shift[V];
    for (int v = 0; v < V; ++v) {
      scale[v] = _mm512_loadu_ps(S + 16 * v);
      shift[v] = _mm512_loadu_ps(Tt + 16 * v);
    }
    for (; start + P <= n; start += P) {
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        const int64_t i = start + 16 * v;
        __m512 value = _mm512_fmadd_ps(load16(x + i, 16), scale[v], shift[v]);
        if (RELU) value = _mm512_max_ps(value, zero);
        if (RES) value = _mm512_add_ps(value, load16(res + i, 16));
        store16(y + i, value, 16);
      }
    }
  }
  for (int64_t b = start; b < n; b += p) {
    const int64_t len = std::min(p, n - b);
    for (int64_t j = 0; j < len; j += 16) {
      const int64_t count = len - j;
      __m512 v = _mm512_fmadd_ps(load16(x + b + j, count), load16(S + j, count),
                                 load16(Tt + j, count));
      if (RELU) v = _mm512_max_ps(v, zero);
      if (RES) v = _mm512_add_ps(v, load16(res + b + j, count));
      store16(y + b + j, v, count);
    }
  }
#else
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
#endif
}

// flat_affine with one other region: scale S + m S1 and shift T + m T1 per value, m its own
// pixel's mask (rows = {S, T, S1, T1}, each repeating with period p). With PER_PIXEL, P is one
// pixel's values and `mk` the mask row itself, one value per pixel.
#ifdef PARTIALSTYLE_AVX512
// The blended affine with one other region over n values, whole periods of P = 16 V values,
// with the period's rows ({S, T, S1, T1}) in registers; mask(period, v) gives vector v's masks
// (a pixel's mask broadcast where a pixel is whole vectors, a subpixel layer's QuadMasks).
template <int P, bool RELU, bool RES, typename T, typename O, typename Mask>
inline void period_masked_affine(const T* __restrict__ x, Mask mask, const float* const rows[4],
                                 const T* __restrict__ res, O* __restrict__ y, int64_t n) {
  constexpr int V = P / 16;
  __m512 s0[V], t0[V], s1[V], t1[V];
  for (int v = 0; v < V; ++v) {
    s0[v] = _mm512_loadu_ps(rows[0] + 16 * v);
    t0[v] = _mm512_loadu_ps(rows[1] + 16 * v);
    s1[v] = _mm512_loadu_ps(rows[2] + 16 * v);
    t1[v] = _mm512_loadu_ps(rows[3] + 16 * v);
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t b = 0, period = 0; b < n; b += P, ++period) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const int64_t i = b + 16 * v;
      const __m512 mv = mask(period, v);
      const __m512 scale = _mm512_fmadd_ps(mv, s1[v], s0[v]);
      const __m512 shift = _mm512_fmadd_ps(mv, t1[v], t0[v]);
      __m512 value = _mm512_fmadd_ps(load16(x + i, 16), scale, shift);
      if (RELU) value = _mm512_max_ps(value, zero);
      if (RES) value = _mm512_add_ps(value, load16(res + i, 16));
      store16(y + i, value, 16);
    }
  }
}
#endif

template <int P, bool RELU, bool RES, bool PER_PIXEL = false, typename T, typename O>
inline void masked_affine(const T* __restrict__ x, const float* __restrict__ mk,
                          const float* const rows[4], const T* __restrict__ res,
                          O* __restrict__ y, int64_t n, int64_t runtime_period) {
  const int64_t p = P > 0 ? P : runtime_period;
  const float* __restrict__ S = rows[0];
  const float* __restrict__ Tt = rows[1];
  const float* __restrict__ S1 = rows[2];
  const float* __restrict__ T1 = rows[3];
#ifdef PARTIALSTYLE_AVX512
  const __m512 zero = _mm512_setzero_ps();
  if constexpr (PER_PIXEL) {
    // mk holds one mask value per pixel of P values (a pixel is whole vectors).
    auto mask = [&](int64_t period, int) { return _mm512_set1_ps(mk[period]); };
    period_masked_affine<P, RELU, RES>(x, mask, rows, res, y, n);
    return;
  }
  for (int64_t b = 0; b < n; b += p) {
    const int64_t len = std::min(p, n - b);
    for (int64_t j = 0; j < len; j += 16) {
      const int64_t count = len - j;
      const __m512 mv = load16(mk + b + j, count);
      const __m512 scale = _mm512_fmadd_ps(mv, load16(S1 + j, count), load16(S + j, count));
      const __m512 shift = _mm512_fmadd_ps(mv, load16(T1 + j, count), load16(Tt + j, count));
      __m512 v = _mm512_fmadd_ps(load16(x + b + j, count), scale, shift);
      if (RELU) v = _mm512_max_ps(v, zero);
      if (RES) v = _mm512_add_ps(v, load16(res + b + j, count));
      store16(y + b + j, v, count);
    }
  }
#else
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
#endif
}

#ifdef PARTIALSTYLE_AVX512
// Moves one z row of a subpixel conv's output (z pixel wz's value 4c + 2i + j, K = 4C a
// pixel) to output row i in pixel order ((2wz + j) C + c), 16 outputs at a time: each vector
// is a permute of two loads where its sources lie within 32 values (C = 2, 4 or 8), else a
// gather. The pattern repeats every lcm(2C, 16) outputs, so its indices are made once.
class SubpixelRows {
 public:
  SubpixelRows(int64_t C, int64_t Wz) : C_(C), Wz_(Wz) {
    const int64_t K = 4 * C;
    period_ = std::lcm<int64_t>(2 * C, 16);
    source_period_ = period_ / (2 * C) * K;
    for (int i = 0; i < 2; ++i)
      for (int64_t v = 0; v < period_ / 16; ++v) {
        alignas(64) int32_t index[16];
        int64_t low = INT64_MAX, high = 0;
        for (int l = 0; l < 16; ++l) {
          const int64_t q = 16 * v + l, w = q / C, c = q % C;
          const int64_t source = (w / 2) * K + 4 * c + 2 * i + (w % 2);
          index[l] = static_cast<int32_t>(source);
          low = std::min(low, source);
          high = std::max(high, source);
        }
        const bool near = high - low < 32;
        if (near)
          for (int l = 0; l < 16; ++l) index[l] -= static_cast<int32_t>(low);
        vectors_[i].push_back({_mm512_load_si512(index), low, near});
      }
  }
  // Output row i (2 Wz C values at `out`) from the row's values (Wz K of them, readable 32
  // values past their end).
  template <typename O>
  void move(const float* values, int i, O* out) const {
    const int64_t n = 2 * Wz_ * C_, whole = n - n % period_;
    int64_t o = 0, base = 0;
    for (; o < whole; o += period_, base += source_period_)
      for (size_t v = 0; v < vectors_[i].size(); ++v) {
        const Vector& pick = vectors_[i][v];
        const float* from = values + base + pick.low;
        const __m512 moved =
            pick.near ? _mm512_permutex2var_ps(_mm512_loadu_ps(from), pick.index,
                                                _mm512_loadu_ps(from + 16))
                      : _mm512_i32gather_ps(pick.index, values + base, 4);
        store16(out + o + 16 * v, moved, 16);
      }
    for (; o < n; ++o) {
      const int64_t w = o / C_, c = o % C_;
      store_one(out, o, values[(w / 2) * 4 * C_ + 4 * c + 2 * i + (w % 2)]);
    }
  }

 private:
  struct Vector {
    __m512i index;
    int64_t low;
    bool near;
  };
  int64_t C_, Wz_, period_, source_period_;
  std::vector<Vector> vectors_[2];
};
#endif

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
    std::vector<float> buffer(direct ? 0 : Wz * K + 32);  // SubpixelRows reads 32 past the end
    std::vector<T> converted(direct ? 0 : Wz * K);
    std::vector<float> srow, trow, mexp;
#ifdef PARTIALSTYLE_AVX512
    // A subpixel conv's output with one other region: its masks made in the loop.
    constexpr bool kQuads = PH == 2 && P > 0 && P % 16 == 0 && P <= 64;
    std::unique_ptr<QuadMasks<kQuads ? P : 16>> quads;
    if (kQuads && R == 1) quads = std::make_unique<QuadMasks<kQuads ? P : 16>>(K);
#endif
    // A z row's results from `values` to their pixels in y, where the layouts differ: a
    // subpixel output to pixel rows by SubpixelRows, else cast to y's dtype along the row
    // first (in vectors), then moved value by value.
#ifdef PARTIALSTYLE_AVX512
    std::unique_ptr<SubpixelRows> subpixel_rows;
    if (!direct && ph == 2 && layout.block == 1)
      subpixel_rows = std::make_unique<SubpixelRows>(C, Wz);
#endif
    auto scatter = [&](int64_t hz, const float* values) {
#ifdef PARTIALSTYLE_AVX512
      if (subpixel_rows) {  // into pixel rows, which are contiguous in y
        for (int64_t i = 0; i < 2; ++i)
          subpixel_rows->move(values, i, y + layout.index(hz * 2 + i + pad, pad, 0));
        return;
      }
#endif
      T* cast = converted.data();
      const int64_t n = Wz * K;
#ifdef PARTIALSTYLE_AVX512
      for (int64_t i = 0; i < n; i += 16) store16(cast + i, load16(values + i, n - i), n - i);
#else
      for (int64_t i = 0; i < n; ++i) store_one(cast, i, values[i]);
#endif
      for (int64_t i = 0; i < ph; ++i)
        for (int64_t wz = 0; wz < Wz; ++wz)
          for (int64_t j = 0; j < ph; ++j) {
            const T* src = cast + wz * K + i * ph + j;
            T* o = y + layout.index(hz * ph + i + pad, wz * ph + j + pad, 0);
            for (int64_t c = 0; c < C; ++c) o[c * ostride] = src[c * phases];
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
        const float* rows[4] = {S.data(), Tt.data(), SR.data(), TR.data()};
        constexpr bool per_pixel = kVectorised && PH == 1 && KK > 0 && KK % 16 == 0;
        if (per_pixel && direct) {
          T* dst = y + layout.index(hz * ph + pad, pad, 0);
          masked_affine<KK, RELU, RES, true>(xrow, m + hz * W, rows, rrow, dst, n, p);
          continue;
        }
#ifdef PARTIALSTYLE_AVX512
        if constexpr (kQuads) {
          if (n % P == 0) {
            const float* top = m + hz * 2 * W;
            auto mask = [&](int64_t period, int v) { return quads->at(top, top + W, period, v); };
            if (direct) {
              T* dst = y + layout.index(hz * ph + pad, pad, 0);
              period_masked_affine<P, RELU, false>(xrow, mask, rows, rrow, dst, n);
            } else {
              period_masked_affine<P, RELU, false>(xrow, mask, rows, rrow, buffer.data(), n);
              scatter(hz, buffer.data());
            }
            continue;
          }
        }
#endif
        if (mexp.empty()) mexp.resize(n);
        expand_mask<PH>(m, W, hz, Wz, K, C, mexp.data());
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

// The interior coordinate (0..n-1) that padded coordinate q of a side of n padded by `pad`
// copies: mirrored without repeating the edge (reflect) or the edge repeated (replicate).
inline int64_t padded_source(int64_t q, int64_t pad, int64_t n, bool reflect) {
  int64_t v = q - pad;
  if (v < 0) v = reflect ? -v : 0;
  else if (v >= n) v = reflect ? 2 * (n - 1) - v : n - 1;
  return v;
}

// Fill the border of the padded [H+2p, W+2p] image in `layout` from its interior: reflect
// (mirror without repeating the edge) or replicate. Left and right columns first, then whole
// top and bottom rows.
template <typename T>
void pad_borders(T* y, int64_t H, int64_t W, int64_t C, int64_t pad, bool reflect,
                 OutLayout layout) {
  if (pad == 0) return;
  auto source = [&](int64_t q, int64_t n) {  // padded coordinate -> the one it copies
    return padded_source(q, pad, n, reflect) + pad;
  };
  const int64_t stride = layout.stride(), Wp = W + 2 * pad;
  auto copy = [&](int64_t hp, int64_t wp, int64_t from_h, int64_t from_w) {
    const T* src = y + layout.index(from_h, from_w, 0);
    T* dst = y + layout.index(hp, wp, 0);
    if (stride == 1) {  // a pixel's channels are contiguous: one copy, not C strided ones
      std::memcpy(dst, src, C * sizeof(T));
      return;
    }
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

// A layer's norm up to its affine: region_moments, the statistics (multistyle.region_statistics:
// each region's moments pooled with `prior` pixels of the image's, the base region's sums
// being the image's minus the others'), then region_affine's scale and shift rows [R, C] (the
// base's, then each other region's difference). `masks` are the R-1 masks of every region but
// `base`; gamma and beta are [R, C]. `ph` 2 reads x as a subpixel conv's output (see
// moments_kernel). `moments`, when not empty, are region_moments' sums already made (by the
// conv that wrote x, amx_conv.cpp), and x is not read for them.
std::vector<torch::Tensor> region_norm_rows(torch::Tensor x, torch::Tensor masks,
                                            torch::Tensor gamma, torch::Tensor beta,
                                            int64_t base, double eps, double prior, int64_t ph,
                                            torch::Tensor moments) {
  check_layout(x, masks, ph);
  const int64_t C = x.size(1) / (ph * ph);
  const int64_t K = masks.numel() ? masks.size(1) : 0;  // regions besides the base
  const int64_t R = K + 1;
  // Rows may be views of one wider table (multistyle_fast.StyleRows): read with their row
  // stride, copied only when a row itself is not contiguous.
  gamma = gamma.to(at::kFloat);
  beta = beta.to(at::kFloat);
  TORCH_CHECK(gamma.dim() == 2 && beta.dim() == 2 && gamma.size(0) == R && gamma.size(1) == C &&
              beta.sizes() == gamma.sizes(), "gamma and beta must be [R, C]");
  if (gamma.stride(1) != 1) gamma = gamma.contiguous();
  if (beta.stride(1) != 1) beta = beta.contiguous();
  const int64_t gamma_row = gamma.stride(0), beta_row = beta.stride(0);
  TORCH_CHECK(K == 0 || (base >= 0 && base < R), "base must index a region");
  if (K == 0) base = 0;
  if (moments.numel() == 0) moments = region_moments(x, masks, ph);
  TORCH_CHECK(moments.scalar_type() == at::kDouble && moments.is_contiguous() &&
                  moments.numel() == (1 + K) * 2 * C + K,
              "moments must be region_moments' fp64 sums for these masks");
  const double* sums = moments.data_ptr<double>();
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
      const double s = g[r * gamma_row + c] / std::sqrt(var[r * C + c] + eps);
      row_scale[r * C + c] = static_cast<float>(s);
      row_shift[r * C + c] = static_cast<float>(b[r * beta_row + c] - mean[r * C + c] * s);
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
  return {scale, shift};
}

// The whole layer in one call: region_norm_rows, then region_affine (ReLU, + residual, padding
// by `pad`, and with `block` 2 the result space-to-depth, see OutLayout).
torch::Tensor region_norm(torch::Tensor x, torch::Tensor masks, torch::Tensor gamma,
                          torch::Tensor beta, int64_t base, double eps, double prior,
                          torch::Tensor residual, bool relu, int64_t pad, bool reflect,
                          int64_t ph, int64_t block, torch::Tensor moments) {
  const auto rows = region_norm_rows(x, masks, gamma, beta, base, eps, prior, ph, moments);
  return region_affine(x, masks, rows[0], rows[1], residual, relu, pad, reflect, ph, block);
}

// An fp32 image [1,C,H,W] -> reflect-padded by `pad`, channels-last, in bf16 or fp32, and with
// `block` 2 in 2x2 pixel blocks (pixel_unshuffle's order, see OutLayout): the style networks'
// input in one pass. As torch ops (pad, a cast to channels-last, an unshuffle) it is two or three
// passes, one a 3-channel transpose that torch runs slowly (0.9 ms at 640x360).
torch::Tensor padded_input(torch::Tensor image, int64_t pad, bool bf16, int64_t block) {
  TORCH_CHECK(image.dim() == 4 && image.size(0) == 1 && image.scalar_type() == at::kFloat,
              "expected one fp32 image [1,C,H,W]");
  const int64_t C = image.size(1), H = image.size(2), W = image.size(3);
  TORCH_CHECK(pad >= 0 && pad < H && pad < W, "reflect padding must be smaller than the image");
  const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
  TORCH_CHECK(block == 1 || (block == 2 && Hp % 2 == 0 && Wp % 2 == 0),
              "block must be 1, or 2 with even padded sides");
  // Any layout: planar, or the channels-last view of an RGB frame, read through its strides.
  const int64_t sc = image.stride(1), sh = image.stride(2), sw = image.stride(3);
  auto y = torch::empty({1, C * block * block, Hp / block, Wp / block},
                        image.options()
                            .dtype(bf16 ? at::kBFloat16 : at::kFloat)
                            .memory_format(at::MemoryFormat::ChannelsLast));
  const OutLayout layout{C, Wp, block};
  const float* in = image.data_ptr<float>();
  auto reflect = [pad](int64_t q, int64_t n) { return padded_source(q, pad, n, true); };
  auto fill_blocks = [&](auto* out) {
    // Straight into 2x2 pixel blocks (a blocked conv's input), one block's 4C values at a time.
    at::parallel_for(0, Hp / 2, 8, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const float* rows[2] = {in + reflect(2 * k, H) * sh, in + reflect(2 * k + 1, H) * sh};
        auto* o = out + layout.index(2 * k, 0, 0);
        for (int64_t l = 0; l < Wp / 2; ++l, o += 4 * C) {
          const int64_t cols[2] = {reflect(2 * l, W) * sw, reflect(2 * l + 1, W) * sw};
          for (int64_t c = 0; c < C; ++c)
            for (int i = 0; i < 2; ++i)
              for (int j = 0; j < 2; ++j)
                store_one(o, c * 4 + i * 2 + j, rows[i][cols[j] + c * sc]);
        }
      }
    });
  };
  auto fill = [&](auto* out) {
    if (block == 2) return fill_blocks(out);
    at::parallel_for(0, Hp, 16, [&](int64_t begin, int64_t end) {
      for (int64_t hp = begin; hp < end; ++hp) {
        const float* source = in + reflect(hp, H) * sh;
        auto* row = out + hp * Wp * C;
        auto* interior = row + pad * C;
        if (sc == 1 && sw == C) {  // already channels-last: one flat run
          for (int64_t i = 0; i < W * C; ++i) store_one(interior, i, source[i]);
        } else {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t w = 0; w < W; ++w) store_one(interior, w * C + c, source[c * sc + w * sw]);
        }
        for (int64_t j = 0; j < pad; ++j)
          for (const int64_t wp : {j, W + 2 * pad - 1 - j}) {
            const int64_t from = reflect(wp, W) + pad;
            std::copy(row + from * C, row + (from + 1) * C, row + wp * C);
          }
      }
    });
  };
  if (bf16) fill(y.data_ptr<at::BFloat16>());
  else fill(y.data_ptr<float>());
  return y;
}

// The weights a premultiplied layer is made with, [H,W] fp32 each: checked, made contiguous
// in place (the caller's vector keeps them alive) and returned as their planes.
static std::vector<const float*> weight_planes(std::vector<torch::Tensor>& weights, int64_t H,
                                               int64_t W) {
  std::vector<const float*> planes;
  for (auto& weight : weights) {
    TORCH_CHECK(weight.dim() == 2 && weight.size(0) == H && weight.size(1) == W &&
                    weight.scalar_type() == at::kFloat,
                "each weight must be fp32 [h,w] of the image's size");
    weight = weight.contiguous();
    planes.push_back(weight.data_ptr<float>());
  }
  return planes;
}

// Row h of the weights' sum, added in order (compose.premultiplied_layer's), into `total`.
static void summed_weights(const std::vector<const float*>& planes, int64_t h, int64_t W,
                           float* total) {
  const float* first = planes[0] + h * W;
  for (int64_t w = 0; w < W; ++w) total[w] = first[w];
  for (size_t p = 1; p < planes.size(); ++p) {
    const float* part = planes[p] + h * W;
    for (int64_t w = 0; w < W; ++w) total[w] += part[w];
  }
}

// The network's last step: sigmoid of the top-left [H, W] of x (one channels-last image, fp32
// or bf16) into a new fp32 channels-last image. As torch ops that is a crop, a cast and an
// in-place sigmoid: three passes over the frame, the cast a slow 3-channel one.
// With `shown_with` (weights [H,W] fp32, the regions the image is shown in), the result is
// instead the premultiplied layer [1,4,H,W] (fp32, planes) that frame_kernels.cpp's
// premultiplied_layer makes of the image, bit for bit: each colour times the weights' sum
// (added in order), then that sum. The image itself is never written.
torch::Tensor sigmoid_output(torch::Tensor x, int64_t H, int64_t W,
                             std::vector<torch::Tensor> shown_with) {
  check_image(x);
  TORCH_CHECK(H <= x.size(2) && W <= x.size(3), "the output must fit in x");
  const int64_t C = x.size(1), n = W * C;
  const bool layer = !shown_with.empty();
  TORCH_CHECK(!layer || C == 3, "a premultiplied layer takes a 3-channel image");
  const std::vector<const float*> weights = weight_planes(shown_with, H, W);
  auto y = layer ? torch::empty({1, 4, H, W}, x.options().dtype(at::kFloat))
                 : torch::empty({1, C, H, W}, x.options().dtype(at::kFloat)
                                                  .memory_format(at::MemoryFormat::ChannelsLast));
  float* out = y.data_ptr<float>();
  auto run = [&](const auto* in) {
    at::parallel_for(0, H, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> pixels(layer ? n : 0);
      for (int64_t h = begin; h < end; ++h) {
        const auto* row = in + h * x.stride(2);
        float* o = layer ? pixels.data() : out + h * n;
#ifdef PARTIALSTYLE_AVX512
        const __m512 one = _mm512_set1_ps(1.0f);
        for (int64_t i = 0; i < n; i += 16) {
          const __m512 v = load16(row + i, n - i);
          const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
          store16(o + i, _mm512_div_ps(one, _mm512_add_ps(one, e)), n - i);
        }
#else
        for (int64_t i = 0; i < n; ++i) o[i] = 1.0f / (1.0f + std::exp(-to_float(row[i])));
#endif
        if (!layer) continue;
        const int64_t plane = H * W;
        float* r = out + h * W;
        float* g = r + plane;
        float* b = g + plane;
        float* total = b + plane;
        summed_weights(weights, h, W, total);
        for (int64_t w = 0; w < W; ++w) {
          r[w] = o[3 * w] * total[w];
          g[w] = o[3 * w + 1] * total[w];
          b[w] = o[3 * w + 2] * total[w];
        }
      }
    });
  };
  if (x.scalar_type() == at::kFloat) run(x.data_ptr<float>());
  else run(x.data_ptr<at::BFloat16>());
  return y;
}

// Soft region masks (N fp32 planes [h,w], any strides) as one [1,N,h,w] tensor of masks that
// sum to 1 per pixel: each (negative values taken as 0) divided by their sum, or 1/N where none
// of them shows (sum <= 1e-6). fused_norm.py defines it; as torch ops (stack, clamp, sum,
// divide, where) it is five passes over the frame.
torch::Tensor normalized_regions(std::vector<torch::Tensor> masks) {
  TORCH_CHECK(!masks.empty(), "expected at least one mask");
  const int64_t N = masks.size(), H = masks[0].size(0), W = masks[0].size(1);
  std::vector<const float*> planes;
  std::vector<int64_t> row_strides, column_strides;
  for (auto& mask : masks) {
    TORCH_CHECK(mask.dim() == 2 && mask.size(0) == H && mask.size(1) == W &&
                mask.scalar_type() == at::kFloat, "masks must be fp32 [h,w] of one size");
    planes.push_back(mask.data_ptr<float>());
    row_strides.push_back(mask.stride(0));
    column_strides.push_back(mask.stride(1));
  }
  auto out = torch::empty({1, N, H, W}, masks[0].options());
  float* o = out.data_ptr<float>();
  const float share = 1.0f / static_cast<float>(N);
  // Rows with unit column stride (the usual masks) are read in place so that the loops
  // vectorise; others are gathered into a row first. The lambda copies what it reads (see
  // frame_kernels.cpp's layer_colors on why references keep loops scalar).
  at::parallel_for(0, H, 16, [=](int64_t begin, int64_t end) {
    std::vector<float> total(W), gathered(W);
    float* sum = total.data();
    auto row_of = [&](int64_t n, int64_t h) -> const float* {
      const float* row = planes[n] + h * row_strides[n];
      const int64_t step = column_strides[n];
      if (step == 1) return row;
      for (int64_t w = 0; w < W; ++w) gathered[w] = row[w * step];
      return gathered.data();
    };
    for (int64_t h = begin; h < end; ++h) {
      std::fill(total.begin(), total.end(), 0.0f);
      for (int64_t n = 0; n < N; ++n) {
        const float* row = row_of(n, h);
        for (int64_t w = 0; w < W; ++w) sum[w] += std::max(row[w], 0.0f);
      }
      // Masks made to fill the frame (a person's mask and its background, 1 - mask) sum to
      // exactly 1: p + fl(1 - p) rounds to 1 for any p in [0, 1]. Dividing by 1 changes no
      // bit, so such a row is copied, without a division per value.
      int not_one = 0;  // an integer OR, so that the loop vectorises
      for (int64_t w = 0; w < W; ++w) not_one |= sum[w] != 1.0f;
      for (int64_t n = 0; n < N; ++n) {
        const float* row = row_of(n, h);
        float* dst = o + (n * H + h) * W;
        if (!not_one) {
          for (int64_t w = 0; w < W; ++w) dst[w] = std::max(row[w], 0.0f);
          continue;
        }
        for (int64_t w = 0; w < W; ++w) {
          const bool shown = sum[w] > 1e-6f;
          dst[w] = shown ? std::max(row[w], 0.0f) / (shown ? sum[w] : 1.0f) : share;
        }
      }
    }
  });
  return out;
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
  // Each region's area: rows summed in float (in any order: the sums only pick the largest
  // region, so the loop may vectorise), rows added up in double.
  std::vector<double> area(R, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    double total = 0.0;
    for (int64_t h = 0; h < H; ++h) {
      const float* row = m + (r * H + h) * W;
      float row_total = 0.0f;
#pragma omp simd reduction(+ : row_total)
      for (int64_t w = 0; w < W; ++w) row_total += row[w];
      total += row_total;
    }
    area[r] = total;
  }
  const int64_t base = std::max_element(area.begin(), area.end()) - area.begin();
  auto options = masks.options();
  // Where the base is the first or the last region the others lie side by side: their
  // full-size masks are a view, not a copy.
  const bool adjacent = base == 0 || base == R - 1;
  auto full = adjacent ? masks.narrow(1, base == 0 ? 1 : 0, K) : torch::empty({1, K, H, W}, options);
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
      if (!adjacent) std::copy(src + 4 * qy * W, src + (4 * qy + 4) * W, f + k * H * W + 4 * qy * W);
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
